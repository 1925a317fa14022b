"""Pipeline configuration: presets, config files, `--set key=value` overrides, and run-dir compatibility.

A pipeline config is one YAML mapping with these sections (every key optional except family and
contexts; missing keys take the defaults below, and the resolved config is written to
`<run>/config.yaml`):

    name: quickstart                # a label for reports
    description: ...
    family: cheetah-run             # hyperzero.envs.FAMILIES
    contexts:                       # exactly one of:
      grid: {speed: "-8:8:2"}       #   per-feature lists or "lo:hi:step" strings (0 skipped for nonzero features)
      # sample: {n: 20, seed: 0, names: [speed, torso_length]}
      # list: [{speed: 2.0}, {speed: -4.0}]
    experts: {...}                  # hyperzero.experts.TD3Config fields, plus ensemble_size and num_workers
    dataset: {n_episodes, seed, exclude_flagged}
    fit: {methods: [...], seeds: [...], ...}   # plus hyperzero.training.FitConfig fields (not method/seed)
    evaluate: {...}                 # hyperzero.evaluation.EvalConfig fields (not methods)
"""
from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

PRESETS_PACKAGE = "hyperzero.launchers.presets"
SECTIONS = ("name", "description", "family", "contexts", "experts", "dataset", "fit", "evaluate")
# Changing these in an existing run only adds work or redoes evaluation; everything else needs --force.
COMPATIBLE_KEYS = ("name", "description", "evaluate", "fit.methods", "fit.seeds")
# Stage outputs that a change of each section invalidates (in pipeline order).
INVALIDATES = {
    "family": ("experts", "dataset", "fits", "eval"),
    "contexts": ("experts", "dataset", "fits", "eval"),
    "experts": ("experts", "dataset", "fits", "eval"),
    "dataset": ("dataset", "fits", "eval"),
    "fit": ("fits", "eval"),
}

DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "family": None,
    "contexts": None,
    "experts": {"ensemble_size": None, "num_workers": None},
    "dataset": {"n_episodes": 10, "seed": 0, "exclude_flagged": False},
    "fit": {"methods": ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa",
                        "mlp_uvfa_td", "maml", "pearl"], "seeds": [0, 1, 2, 3, 4]},
    "evaluate": {},
}


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files(PRESETS_PACKAGE).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text()) or {}
            out[entry.name[:-5]] = str(data.get("description", "")).strip().split("\n")[0]
    return out


def load_config_source(source: str) -> tuple[dict, str]:
    """A preset name or a YAML file path -> (raw mapping, where it came from)."""
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ValueError(f"config file {source} does not exist; pass a preset name ({', '.join(list_presets())}) "
                             f"or an existing YAML file")
        where = str(path.resolve())
        text = path.read_text()
    else:
        presets = list_presets()
        if source not in presets:
            raise ValueError(f"unknown preset {source!r}; choose one of: {', '.join(presets)} (see `hyperzero run --list`), "
                             f"or pass a YAML config file")
        where = f"preset:{source}"
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{where}: the config must be a YAML mapping with sections {', '.join(SECTIONS)}")
    return data, where


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """`["experts.train_steps=30000", "fit.seeds=[0,1]"]`: dotted key, YAML value."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r} must look like key=value, e.g. --set experts.train_steps=30000")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts or parts[0] not in SECTIONS:
            raise ValueError(f"--set {item!r}: unknown section {parts[0] if parts else key!r}; sections are "
                             f"{', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: value is not valid YAML ({e})") from e
        node = config
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ValueError(f"--set {item!r}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return config


def _check_fields(section: str, values: Mapping, cls: type, extra: Sequence[str] = (), excluded: Sequence[str] = ()):
    known = {f.name for f in dataclasses.fields(cls)} - set(excluded)
    unknown = sorted(set(values) - known - set(extra))
    if unknown:
        raise ValueError(f"config section {section!r}: unknown keys {unknown}; allowed: {sorted(known | set(extra))}")


def resolve_contexts(family: str, spec: Any) -> list[dict[str, float]]:
    """The task list of a `contexts:` section, validated by the family's context space."""
    from hyperzero.envs import get_family

    space = get_family(family).context_space
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in ("grid", "sample", "list"):
        raise ValueError("config section 'contexts' must have exactly one of grid: {feature: values}, "
                         "sample: {n, seed, names}, or list: [{feature: value}, ...]")
    kind, value = next(iter(spec.items()))
    if kind == "grid":
        if not isinstance(value, Mapping) or not value:
            raise ValueError("contexts.grid must map feature names to value lists or 'lo:hi:step' strings")
        contexts = space.grid(**{k: (v if isinstance(v, str) else list(v)) for k, v in value.items()})
    elif kind == "sample":
        value = dict(value or {})
        if "n" not in value:
            raise ValueError("contexts.sample needs n (and optionally seed, names)")
        contexts = space.sample(int(value["n"]), int(value.get("seed", 0)), value.get("names"))
    else:
        if not isinstance(value, list) or not value:
            raise ValueError("contexts.list must be a non-empty list of context mappings")
        contexts = [space.validate(c) for c in value]
    from hyperzero.envs import context_id

    ids = [context_id(c) for c in contexts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"contexts contain duplicate tasks {duplicates}; list each task once")
    if len(contexts) < 2:
        raise ValueError(f"the pipeline needs at least 2 tasks (train and held-out), got {len(contexts)}")
    return contexts


def resolve_config(raw: Mapping, overrides: Sequence[str] = ()) -> dict:
    """Defaults + raw + overrides, checked against every stage's config class. Returns plain data."""
    from hyperzero.envs import FAMILIES
    from hyperzero.evaluation import EvalConfig
    from hyperzero.experts import TD3Config

    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; allowed: {', '.join(SECTIONS)}")
    config = apply_overrides(deep_merge(DEFAULTS, raw), overrides)
    family = config.get("family")
    if family not in FAMILIES:
        raise ValueError(f"config 'family' must be one of {', '.join(FAMILIES)} (got {family!r})")
    resolve_contexts(family, config.get("contexts"))
    experts = config["experts"]
    _check_fields("experts", experts, TD3Config, extra=("ensemble_size", "num_workers"))
    TD3Config(**{k: v for k, v in experts.items() if k not in ("ensemble_size", "num_workers")}).resolved(family)
    _check_fields_dataset(config["dataset"])
    fit = config["fit"]
    methods, seeds = fit.get("methods"), fit.get("seeds")
    if not methods or not isinstance(methods, list):
        raise ValueError("fit.methods must be a non-empty list of method names, e.g. [hyperzero, mlp_policy]")
    if not seeds or not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ValueError("fit.seeds must be a non-empty list of integer split seeds, e.g. [0, 1, 2, 3, 4]")
    _check_fit_section(fit)
    evaluate = config["evaluate"]
    _check_fields("evaluate", evaluate, EvalConfig, excluded=("methods",))
    EvalConfig(**evaluate)
    return config


def _check_fields_dataset(dataset: Mapping) -> None:
    allowed = {"n_episodes", "seed", "exclude_flagged"}
    unknown = sorted(set(dataset) - allowed)
    if unknown:
        raise ValueError(f"config section 'dataset': unknown keys {unknown}; allowed: {sorted(allowed)}")
    if int(dataset.get("n_episodes", 1)) < 1:
        raise ValueError(f"dataset.n_episodes must be >= 1 (got {dataset.get('n_episodes')})")


def _check_fit_section(fit: Mapping) -> None:
    from hyperzero.models.registry import METHODS

    bad = [m for m in fit["methods"] if m not in METHODS]
    if bad:
        raise ValueError(f"fit.methods: unknown methods {bad}; choose from {', '.join(METHODS)}")
    try:
        from hyperzero.training import FitConfig
    except ImportError:  # training stage not installed yet: checked when the fit stage runs
        return
    _check_fields("fit", fit, FitConfig, extra=("methods", "seeds"), excluded=("method", "seed"))
    for method in fit["methods"]:
        fit_config(fit, method, fit["seeds"][0]).check()


def fit_config(fit_section: Mapping, method: str, seed: int, device: str | None = None):
    from hyperzero.training import FitConfig

    values = {k: v for k, v in fit_section.items() if k not in ("methods", "seeds")}
    if device:
        values["device"] = device
    return FitConfig.from_dict({**values, "method": method, "seed": int(seed)})


def _flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def config_differences(old: Mapping, new: Mapping) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def incompatible(differences: Sequence[str]) -> list[str]:
    return [d for d in differences
            if not any(d == c or d.startswith(c + ".") for c in COMPATIBLE_KEYS)]


def invalidated_stages(differences: Sequence[str]) -> list[str]:
    stages: list[str] = []
    for d in incompatible(differences):
        for stage in INVALIDATES.get(d.split(".")[0], ()):
            if stage not in stages:
                stages.append(stage)
    return stages


def dump_yaml(config: Mapping) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
