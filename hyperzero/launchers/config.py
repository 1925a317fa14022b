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
    fit: {methods: [...], seeds: [...], num_workers, ...}  # plus hyperzero.training.FitConfig fields (not method/seed)
    evaluate: {...}                 # hyperzero.evaluation.EvalConfig fields (not methods)
"""
from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from hyperzero.experts.gate import GateConfig
from hyperzero.experts.profiles import profile_config

class ConfigLoader(yaml.SafeLoader):
    """YAML with the YAML 1.2 core schema's scalars: `-10:10:0.5` stays a string (YAML 1.1 reads it as a
    base-60 number), `1e3` is a number, and only true/false are booleans (not yes/no/on/off)."""


class ConfigDumper(yaml.SafeDumper):
    """Quotes every string that either YAML 1.1 or 1.2 would read as something else."""


def _core_schema_resolvers() -> None:
    import re

    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    scalars = {
        "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        "tag:yaml.org,2002:int": (r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$", "-+0123456789"),
        "tag:yaml.org,2002:float": (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    }
    for tag, (pattern, first) in scalars.items():
        for cls in (ConfigLoader, ConfigDumper):
            cls.add_implicit_resolver(tag, re.compile(pattern), list(first))


_core_schema_resolvers()


def load_yaml(text: str):
    """Parse config YAML (see ConfigLoader)."""
    return yaml.load(text, Loader=ConfigLoader)


PRESETS_PACKAGE = "hyperzero.launchers.presets"
SECTIONS = ("name", "description", "family", "contexts", "experts", "dataset", "fit", "evaluate")
# Changing these in an existing run only adds work or redoes evaluation; everything else needs --force.
COMPATIBLE_KEYS = ("name", "description", "evaluate", "fit.methods", "fit.seeds", "fit.num_workers")
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
    # a fixed ensemble size: which tasks share a stacked ensemble must not depend on the core count
    "experts": {"profile": "authors", "gate": {}, "ensemble_size": 4, "num_workers": None},
    "dataset": {"n_episodes": 10, "seed": 0, "exclude_flagged": True},
    "fit": {"methods": ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa",
                        "mlp_uvfa_td", "maml", "pearl"], "seeds": [0, 1, 2, 3, 4], "num_workers": None},
    "evaluate": {},
}


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files(PRESETS_PACKAGE).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = load_yaml(entry.read_text()) or {}
            out[entry.name[:-5]] = str(data.get("description", "")).strip().split("\n")[0]
    return out


def load_config_source(source: str) -> tuple[dict, str]:
    """A preset name or a YAML file path -> (raw mapping, where it came from)."""
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ValueError(f"config file {source} does not exist; pass a preset name ({', '.join(list_presets())}) "
                             f"or an existing YAML file")
        where = str(path)  # as given: an absolute path would record the build machine in config.yaml
        text = path.read_text()
    else:
        presets = list_presets()
        if source not in presets:
            raise ValueError(f"unknown preset {source!r}; choose one of: {', '.join(presets)} (see `hyperzero run --list`), "
                             f"or pass a YAML config file")
        where = f"preset:{source}"
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").read_text()
    try:
        data = load_yaml(text)
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
            value = load_yaml(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: value is not valid YAML ({e})") from e
        if parts[0] == "contexts" and len(parts) > 1 and isinstance(config.get("contexts"), dict):
            # contexts holds exactly one of grid/sample/list: setting one kind replaces the preset's other kind
            config["contexts"] = {k: v for k, v in config["contexts"].items() if k == parts[1]}
        node = config
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ValueError(f"--set {item!r}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return config


def expert_settings(section: Mapping) -> tuple:
    """A resolved `experts:` section -> (TD3Config, GateConfig or None, ensemble_size, num_workers)."""
    values = dict(section)
    sweep = {k: values.pop(k) for k in SWEEP_KEYS if k in values}
    config = profile_config(sweep.get("profile", "authors"), **values)
    gate = GateConfig(**(sweep.get("gate") or {}))
    return config, (gate if gate.enabled else None), sweep.get("ensemble_size"), sweep.get("num_workers")


def _check_fields(section: str, values: Mapping, cls: type, extra: Sequence[str] = (), excluded: Sequence[str] = ()):
    known = {f.name for f in dataclasses.fields(cls)} - set(excluded)
    unknown = sorted(set(values) - known - set(extra))
    if unknown:
        raise ValueError(f"config section {section!r}: unknown keys {unknown}; allowed: {sorted(known | set(extra))}")


@dataclasses.dataclass
class ExpertSweepSettings:
    """The `experts:` keys that are not TD3Config fields: solver profile, quality gate, process layout."""

    profile: str = "authors"  # named TD3Config base (hyperzero.experts.profiles: authors | fast); keys here override it
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)  # quality gate and retries (enabled: false = off)
    ensemble_size: Optional[int] = 4  # tasks per stacked ensemble; fixed (not derived from the core count) so the
                                      # same config packs the same tasks together on every machine
    num_workers: Optional[int] = None  # parallel processes; None = one per core (changes speed, not the packing)


SWEEP_KEYS = tuple(f.name for f in dataclasses.fields(ExpertSweepSettings))


@dataclasses.dataclass
class DatasetSettings:
    """The `dataset:` section: how the experts' rollouts are collected."""

    n_episodes: int = 10           # deterministic expert episodes recorded per task
    seed: int = 0                  # seed of the dataset's episode seeds (disjoint from the experts' own)
    exclude_flagged: bool = True   # leave out experts flagged by the quality gate (listed in the manifest, said on stderr)


@dataclasses.dataclass
class FitSweep:
    """The `fit:` keys that are not FitConfig fields: which fits the pipeline runs."""

    methods: list[str] = dataclasses.field(default_factory=list)  # method names (hyperzero.models.registry.METHODS)
    seeds: list[int] = dataclasses.field(default_factory=list)    # split seeds; each is one train/val/test split
    num_workers: Optional[int] = None  # local executor: fits at once, one process each with cores/N threads; None =
                                       # one per core, 1 = one after another (speed only; Ray runs one per CPU)


FIT_SWEEP_KEYS = tuple(f.name for f in dataclasses.fields(FitSweep))


def _section(config: dict, name: str) -> dict:
    value = config.get(name)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"config section {name!r} must be a mapping of keys to values (got {value!r})")
    config[name] = dict(value)
    return config[name]


def _stage_check(section: str, check) -> Any:
    """Run a stage config's own range checks; their ValueError is prefixed with the section."""
    try:
        return check()
    except ValueError as e:
        text = str(e)
        raise ValueError(text if text.startswith(f"{section}.") else f"config section {section!r}: {text}") from None


def _number_list(key: str, value: Any) -> list:
    """Grid values: a list of numbers, one number, or a 'lo:hi:step' / '1,2,3' string (kept as is)."""
    from hyperzero.utils.typed import convert

    if isinstance(value, str):
        return value  # parsed (and checked) by ContextSpace.grid
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key}={value!r}: must be a non-empty list of numbers, one number, or a 'lo:hi:step' "
                         f"string such as -10:10:0.5")
    return [convert(f"{key}[{i}]", v, float, coerce=True) for i, v in enumerate(value)]


def resolve_contexts(family: str, spec: Any) -> list[dict[str, float]]:
    """The task list of a `contexts:` section, validated by the family's context space."""
    from hyperzero.envs import context_id, get_family
    from hyperzero.utils.typed import convert

    space = get_family(family).context_space
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in ("grid", "sample", "list"):
        raise ValueError(f"contexts={spec!r}: the section must have exactly one of grid: {{feature: values}}, "
                         "sample: {n, seed, names}, or list: [{feature: value}, ...]")
    kind, value = next(iter(spec.items()))
    try:
        if kind == "grid":
            if not isinstance(value, Mapping) or not value:
                raise ValueError(f"contexts.grid={value!r}: must map feature names to value lists or 'lo:hi:step' "
                                 f"strings, e.g. {{speed: -10:10:0.5}}")
            contexts = space.grid(**{str(k): _number_list(f"contexts.grid.{k}", v) for k, v in value.items()})
        elif kind == "sample":
            if not isinstance(value, Mapping) or "n" not in value:
                raise ValueError(f"contexts.sample={value!r}: needs n (and optionally seed, names), "
                                 f"e.g. {{n: 20, seed: 0, names: [speed]}}")
            unknown = sorted(set(value) - {"n", "seed", "names"})
            if unknown:
                raise ValueError(f"contexts.sample: unknown keys {unknown}; allowed: ['n', 'names', 'seed']")
            n = convert("contexts.sample.n", value["n"], int, coerce=True)
            if n < 1:
                raise ValueError(f"contexts.sample.n={n}: must be >= 1")
            seed = convert("contexts.sample.seed", value.get("seed", 0), int, coerce=True)
            names = convert("contexts.sample.names", value.get("names"), Optional[list[str]], coerce=True)
            contexts = space.sample(n, seed, names)
        else:
            if not isinstance(value, list) or not value:
                raise ValueError(f"contexts.list={value!r}: must be a non-empty list of context mappings, "
                                 f"e.g. [{{speed: 2}}, {{speed: -4}}]")
            contexts = [space.validate(c) for c in value]
    except ValueError as e:
        text = str(e)
        raise ValueError(text if text.startswith("contexts") else f"contexts.{kind}: {text}") from None
    ids = [context_id(c) for c in contexts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"contexts contain duplicate tasks {duplicates}; list each task once")
    if len(contexts) < 2:
        raise ValueError(f"contexts: the pipeline needs at least 2 tasks (train and held-out), got {len(contexts)}")
    return contexts


def resolve_config(raw: Mapping, overrides: Sequence[str] = ()) -> dict:
    """Defaults + raw + overrides, every value checked for type and range. Returns plain data.

    Values are converted only when the conversion is exact (`1e3` -> 1000 for an integer field); any
    other mismatch is a ValueError naming the dotted key, the value and the allowed form. Nothing is
    written here, so a refused config leaves the run directory untouched.
    """
    from hyperzero.envs import FAMILIES, get_family
    from hyperzero.evaluation import EvalConfig
    from hyperzero.experts import TD3Config
    from hyperzero.utils.typed import coerce_fields, convert

    if not isinstance(raw, Mapping):
        raise ValueError(f"the config must be a YAML mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; allowed: {', '.join(SECTIONS)}")
    config = apply_overrides(deep_merge(DEFAULTS, raw), overrides)
    for key in ("name", "description"):
        config[key] = convert(key, "" if config.get(key) is None else config[key], str, coerce=True)
    family = config.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"family={family!r}: must be one of {', '.join(FAMILIES)}")
    resolve_contexts(family, config.get("contexts"))

    experts = _section(config, "experts")
    packing = ("ensemble_size", "num_workers")
    _check_fields("experts", experts, TD3Config, extra=SWEEP_KEYS)
    experts.update(coerce_fields(TD3Config, experts, "experts"))
    experts.update(coerce_fields(ExpertSweepSettings, experts, "experts"))
    _check_fields("experts.gate", experts.get("gate", {}), GateConfig)
    _stage_check("experts.gate", lambda: GateConfig(**experts.get("gate", {})).validate())
    _stage_check("experts.profile", lambda: profile_config(experts.get("profile", "authors")))
    for key in packing:
        if experts.get(key) is not None and experts[key] < 1:
            raise ValueError(f"experts.{key}={experts[key]}: must be >= 1 (or null for the default)")
    _stage_check("experts", lambda: expert_settings(experts)[0].resolved(family))

    dataset = _section(config, "dataset")
    _check_fields("dataset", dataset, DatasetSettings)
    dataset.update(coerce_fields(DatasetSettings, dataset, "dataset"))
    if dataset.get("n_episodes", 1) < 1:
        raise ValueError(f"dataset.n_episodes={dataset['n_episodes']}: must be >= 1")
    if dataset.get("seed", 0) < 0:
        raise ValueError(f"dataset.seed={dataset['seed']}: must be >= 0")

    fit = _section(config, "fit")
    fit.update(coerce_fields(FitSweep, fit, "fit"))
    if not fit.get("methods"):
        raise ValueError(f"fit.methods={fit.get('methods')!r}: must be a non-empty list of method names, "
                         f"e.g. [hyperzero, mlp_policy]")
    if not fit.get("seeds"):
        raise ValueError(f"fit.seeds={fit.get('seeds')!r}: must be a non-empty list of integer split seeds, "
                         f"e.g. [0, 1, 2, 3, 4]")
    if len(set(fit["seeds"])) != len(fit["seeds"]) or any(s < 0 for s in fit["seeds"]):
        raise ValueError(f"fit.seeds={fit['seeds']}: split seeds must be distinct and >= 0")
    if fit.get("num_workers") is not None and fit["num_workers"] < 1:
        raise ValueError(f"fit.num_workers={fit['num_workers']}: must be >= 1 (or null for one per core)")
    _check_fit_section(fit)

    evaluate = _section(config, "evaluate")
    _check_fields("evaluate", evaluate, EvalConfig, excluded=("methods", "seeds"))
    evaluate.update(coerce_fields(EvalConfig, evaluate, "evaluate", exclude=("methods", "seeds")))
    space = get_family(family).context_space
    for i, ctx in enumerate(evaluate.get("video_contexts") or []):
        _stage_check(f"evaluate.video_contexts[{i}]", lambda ctx=ctx: space.validate(ctx))
    _stage_check("evaluate", lambda: EvalConfig(**evaluate))
    return config


def _check_fit_section(fit: Mapping) -> None:
    from hyperzero.models.registry import METHODS
    from hyperzero.training import FitConfig
    from hyperzero.utils.typed import coerce_fields

    bad = [m for m in fit["methods"] if m not in METHODS]
    if bad:
        raise ValueError(f"fit.methods: unknown methods {bad}; choose from {', '.join(METHODS)}")
    _check_fields("fit", fit, FitConfig, extra=FIT_SWEEP_KEYS, excluded=("method", "seed"))
    if "model" in fit:
        from hyperzero.models.config import ModelConfig

        if not isinstance(fit["model"], Mapping):
            raise ValueError(f"fit.model={fit['model']!r}: must be a mapping of ModelConfig fields")
        _check_fields("fit.model", fit["model"], ModelConfig)
    fit.update(coerce_fields(FitConfig, fit, "fit", exclude=("method", "seed")))
    for method in fit["methods"]:
        _stage_check("fit", lambda method=method: fit_config(fit, method, fit["seeds"][0]).check())


def fit_config(fit_section: Mapping, method: str, seed: int, device: str | None = None):
    from hyperzero.training import FitConfig

    values = {k: v for k, v in fit_section.items() if k not in FIT_SWEEP_KEYS}
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
    return yaml.dump(dict(config), Dumper=ConfigDumper, sort_keys=False, default_flow_style=None, width=110,
                     allow_unicode=True)
