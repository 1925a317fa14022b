"""Pipeline configuration: what each section means, its checks, the typed `PipelineConfig`, and run-dir
compatibility (reading files, presets and `--set` is `hyperzero.launchers.config_files`; what a config asks of
this machine, `hyperzero.launchers.resources`).

A pipeline config is one YAML mapping with these sections (every key optional except family and
contexts; missing keys take the defaults below, and the resolved config is written to
`<run>/config.yaml`):

    name: quickstart                # a label for reports
    description: ...
    family: cheetah-run             # a registered family (`hyperzero envs`; your own: docs/own-environment.md)
    contexts:                       # exactly one of:
      grid: {speed: "-8:8:2"}       #   per-feature lists or "lo:hi:step" strings (0 skipped for nonzero features)
      # sample: {n: 20, seed: 0, names: [speed, torso_length]}
      # list: [{speed: 2.0}, {speed: -4.0}]
    experts: {...}                  # hyperzero.experts.TD3Config fields, plus ensemble_size and num_workers
    dataset: {n_episodes, seed, exclude_flagged}
    fit: {methods: [...], seeds: [...], num_workers, ...}  # plus hyperzero.training.FitConfig fields (not method/seed)
    evaluate: {...}                 # hyperzero.evaluation.EvalConfig fields (not methods)

`resolve_config` checks a config and returns it as plain data; `resolve_pipeline_config` returns it typed
(`PipelineConfig`, the stages' dataclasses), which is what `hyperzero run` hands its stages.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from hyperzero.launchers.config_files import (
    SECTIONS,
    apply_overrides,
    deep_merge,
    load_config_source,
)
from hyperzero.experts.chain import ChainConfig
from hyperzero.experts.gate import GateConfig
from hyperzero.experts.profiles import profile_config
from hyperzero.experts.solvers import DEFAULT_SOLVER
from hyperzero.utils.typed import refuse_unknown_keys


MAX_TASKS = 10_000          # tasks (experts) in one run: far above any sweep here (the paper's largest: 360)


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


def _check_fields(section: str, values: Mapping, cls: type, extra: Sequence[str] = (), excluded: Sequence[str] = ()):
    known = {f.name for f in dataclasses.fields(cls)} - set(excluded)
    refuse_unknown_keys(values, known | set(extra), where=f"config section {section!r}: ")


@dataclasses.dataclass
class ExpertSweepSettings:
    """The `experts:` keys that are not the solver config's fields: solver, profile, quality gate, process layout."""

    solver: str = DEFAULT_SOLVER  # expert solver (hyperzero.experts.solvers.SOLVERS: td3 | sac); the other keys of
                                  # this section are its config's fields
    profile: str = "authors"  # named TD3Config base (hyperzero.experts.profiles: authors | fast); keys here override it
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)  # quality gate and retries (enabled: false = off)
    ensemble_size: Optional[int] = 4  # tasks per stacked ensemble; fixed (not derived from the core count) so the
                                      # same config packs the same tasks together on every machine
    num_workers: Optional[int] = None  # parallel processes; None = one per core (changes speed, not the packing)
    chain: ChainConfig = dataclasses.field(default_factory=ChainConfig)  # anchors from scratch, the rest warm-started
    #   from their nearest finished expert in waves (enabled: true = on; docs/experts.md "Chains")


SWEEP_KEYS = tuple(f.name for f in dataclasses.fields(ExpertSweepSettings))


@dataclasses.dataclass
class DatasetSettings:
    """The `dataset:` section: how the experts' rollouts are collected."""

    n_episodes: int = 10           # deterministic expert episodes recorded per task
    seed: int = 0                  # seed of the dataset's episode seeds (disjoint from the experts' own)
    exclude_flagged: bool = True   # leave out experts flagged by the quality gate (listed in the manifest, said on stderr)
    action_noise: float = 0.0      # std of Gaussian noise on the executed action; labels stay the expert's (DART)


ALL_METHODS = ("hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa", "mlp_uvfa_td",
               "maml", "pearl")  # the paper's methods (context_blind, a floor, is opt-in)


@dataclasses.dataclass
class FitSweep:
    """The `fit:` keys that are not FitConfig fields: which fits the pipeline runs."""

    methods: list[str] = dataclasses.field(default_factory=lambda: list(ALL_METHODS))  # method names
    #   (hyperzero.models.registry.METHODS; `all` on the command line = every registered one)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2, 3, 4])  # split seeds; each is one
    #   train/val/test split and the init seed of its fits
    num_workers: Optional[int] = None  # local executor: fits at once, one process each with cores/N threads; None =
                                       # one per core, 1 = one after another (speed only; Ray runs one per CPU)


FIT_SWEEP_KEYS = tuple(f.name for f in dataclasses.fields(FitSweep))


def _listed_defaults(cls: type, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """A section's keys that every resolved config lists, at their dataclass defaults (a nested dataclass as {}:
    its own fields appear only where a config sets them)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in leave_out:
            continue
        value = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        out[f.name] = {} if dataclasses.is_dataclass(value) else value
    return out


# Defaults of the pipeline's own settings of each section, listed in every resolved config (so in every run's
# config.yaml); the stage config classes' fields (TD3Config, FitConfig, EvalConfig, ...) appear only where a config
# sets them, and default in those classes. dataset.action_noise and experts.solver are left out of the list: runs
# recorded before they existed have no such key, and listing it would make their config.yaml differ.
DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "family": None,
    "contexts": None,
    "experts": _listed_defaults(ExpertSweepSettings, leave_out=("solver", "chain")),
    "dataset": _listed_defaults(DatasetSettings, leave_out=("action_noise",)),
    "fit": _listed_defaults(FitSweep),
    "evaluate": {},
}


def _section(config: dict, name: str) -> dict:
    value = config.get(name)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"config section {name!r} must be a mapping of keys to values (got {value!r})")
    config[name] = dict(value)
    return config[name]


def _stage_check(section: str, check, cls_name: str | None = None) -> Any:
    """Run a stage config's own range checks; their ValueError is prefixed with the section (a message that
    names `<cls_name>.<field>` is renamed to the dotted key `<section>.<field>`)."""
    try:
        return check()
    except ValueError as e:
        text = str(e)
        if cls_name and text.startswith(f"{cls_name}."):
            raise ValueError(f"{section}.{text[len(cls_name) + 1:]}") from None
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


def _axis_size(values: Any) -> int:
    """Values one grid axis would have (a 'lo:hi:step' string is counted the way ContextSpace.grid parses it)."""
    from hyperzero.envs.context import parse_values

    if isinstance(values, str):
        try:
            return len(parse_values(values))
        except ValueError:
            return 1  # ContextSpace.grid reports the bad string itself
    return len(values)


def _grid_size(axes: Mapping[str, Any]) -> int:
    count = 1
    for values in axes.values():
        count *= max(1, _axis_size(values))
    return count


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
            axes = {str(k): _number_list(f"contexts.grid.{k}", v) for k, v in value.items()}
            count = _grid_size(axes)
            if count > MAX_TASKS:
                raise ValueError(f"contexts.grid: {' x '.join(str(_axis_size(v)) for v in axes.values())} = {count} "
                                 f"tasks, more than {MAX_TASKS} (one expert each); use larger steps or fewer values")
            contexts = space.grid(**axes)
        elif kind == "sample":
            if not isinstance(value, Mapping) or "n" not in value:
                raise ValueError(f"contexts.sample={value!r}: needs n (and optionally seed, names), "
                                 f"e.g. {{n: 20, seed: 0, names: [speed]}}")
            refuse_unknown_keys(value, {"n", "seed", "names"}, where="contexts.sample: ")
            n = convert("contexts.sample.n", value["n"], int, coerce=True)
            if not 1 <= n <= MAX_TASKS:
                raise ValueError(f"contexts.sample.n={n}: must be in 1 .. {MAX_TASKS} (tasks, one expert each)")
            seed = convert("contexts.sample.seed", value.get("seed", 0), int, coerce=True)
            names = convert("contexts.sample.names", value.get("names"), Optional[list[str]], coerce=True)
            contexts = space.sample(n, seed, names)
        else:
            if not isinstance(value, list) or not value:
                raise ValueError(f"contexts.list={value!r}: must be a non-empty list of context mappings, "
                                 f"e.g. [{{speed: 2}}, {{speed: -4}}]")
            if len(value) > MAX_TASKS:
                raise ValueError(f"contexts.list has {len(value)} tasks, more than {MAX_TASKS}")
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


def check_experts_section(experts: dict, family: str) -> None:
    """Check and convert (in place) an `experts:` section: the chosen solver's config fields and
    ExpertSweepSettings fields."""
    from hyperzero.experts.solvers import get_solver
    from hyperzero.utils.typed import coerce_fields

    experts.update(coerce_fields(ExpertSweepSettings, {k: v for k, v in experts.items() if k == "solver"}, "experts"))
    solver = experts.get("solver", DEFAULT_SOLVER)
    config_class = _stage_check("experts.solver", lambda: get_solver(solver)).config_class
    try:
        _check_fields("experts", experts, config_class, extra=SWEEP_KEYS)
    except ValueError as e:
        raise ValueError(f"{e} (the keys of solver {solver}: {config_class.__name__} fields and the sweep settings; "
                         f"experts.solver chooses the solver)") from None
    experts.update(coerce_fields(config_class, experts, "experts"))
    experts.update(coerce_fields(ExpertSweepSettings, experts, "experts"))
    _check_fields("experts.gate", experts.get("gate", {}), GateConfig)
    _stage_check("experts.gate", lambda: GateConfig(**experts.get("gate", {})).validate())
    _check_fields("experts.chain", experts.get("chain", {}), ChainConfig)
    _stage_check("experts.profile", lambda: profile_config(experts.get("profile", "authors"), solver=solver))
    for key in ("ensemble_size", "num_workers"):
        if experts.get(key) is not None and experts[key] < 1:
            raise ValueError(f"experts.{key}={experts[key]}: must be >= 1 (or null for the default)")
    solver = _stage_check("experts", lambda: ExpertsSection.from_dict(experts).solver.resolved(family),
                          cls_name=config_class.__name__)
    if experts.get("chain"):  # steps >= one episode of the experts' own length
        from hyperzero.envs import get_family

        episode = solver.max_episode_steps or get_family(family).episode_steps
        _stage_check("experts.chain", lambda: ChainConfig(**experts["chain"]).validate(
            episode, solver.seed_steps, solver.train_steps))


def check_dataset_section(dataset: dict) -> None:
    """Check and convert (in place) a `dataset:` section (DatasetSettings fields)."""
    from hyperzero.utils.typed import coerce_fields

    _check_fields("dataset", dataset, DatasetSettings)
    dataset.update(coerce_fields(DatasetSettings, dataset, "dataset"))
    if dataset.get("n_episodes", 1) < 1:
        raise ValueError(f"dataset.n_episodes={dataset['n_episodes']}: must be >= 1")
    if not 0.0 <= float(dataset.get("action_noise", 0.0)) <= 1.0:
        raise ValueError(f"dataset.action_noise={dataset['action_noise']}: must be a std in [0, 1] (0 = no noise)")
    if dataset.get("seed", 0) < 0:
        raise ValueError(f"dataset.seed={dataset['seed']}: must be >= 0")
    if dataset.get("n_episodes", 1) > MAX_EPISODES_PER_TASK:
        raise ValueError(f"dataset.n_episodes={dataset['n_episodes']}: must be <= {MAX_EPISODES_PER_TASK}")


def check_fit_section(fit: dict, family: str | None = None, context_dim: int = 1) -> None:
    """Check and convert (in place) a `fit:` section: FitSweep and FitConfig fields (not method/seed); with a
    family, every method's model is also built on the meta device."""
    from hyperzero.utils.typed import coerce_fields

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
    _check_fit_section(fit, family, context_dim)


def check_evaluate_section(evaluate: dict, family: str | None = None,
                           excluded: Sequence[str] = ("methods", "seeds")) -> None:
    """Check and convert (in place) an `evaluate:` section (EvalConfig fields; the pipeline evaluates every fit,
    so methods and seeds are excluded there); with a family, video_contexts are checked by its context space."""
    from hyperzero.envs import get_family
    from hyperzero.evaluation import EvalConfig
    from hyperzero.utils.typed import coerce_fields

    _check_fields("evaluate", evaluate, EvalConfig, excluded=excluded)
    evaluate.update(coerce_fields(EvalConfig, evaluate, "evaluate", exclude=tuple(excluded)))
    if family is not None:
        space = get_family(family).context_space
        for i, ctx in enumerate(evaluate.get("video_contexts") or []):
            _stage_check(f"evaluate.video_contexts[{i}]", lambda ctx=ctx: space.validate(ctx))
    _stage_check("evaluate", lambda: EvalConfig(**evaluate))
    if evaluate.get("video_steps", 0) > MAX_VIDEO_STEPS:
        raise ValueError(f"evaluate.video_steps={evaluate['video_steps']}: must be <= {MAX_VIDEO_STEPS} "
                         f"(the frames are held in memory)")


def resolve_config(raw: Mapping, overrides: Sequence[str] = ()) -> dict:
    """Defaults + raw + overrides, every value checked for type and range. Returns plain data.

    Values are converted only when the conversion is exact (`1e3` -> 1000 for an integer field); any
    other mismatch is a ValueError naming the dotted key, the value and the allowed form. Nothing is
    written here, so a refused config leaves the run directory untouched.
    """
    from hyperzero.envs import family_names, has_family
    from hyperzero.utils.typed import convert

    if not isinstance(raw, Mapping):
        raise ValueError(f"the config must be a YAML mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; allowed: {', '.join(SECTIONS)}")
    config = apply_overrides(deep_merge(DEFAULTS, raw), overrides)
    for key in ("name", "description"):
        config[key] = convert(key, "" if config.get(key) is None else config[key], str, coerce=True)
    family = config.get("family")
    if not isinstance(family, str) or not has_family(family):
        from hyperzero.envs.registry import HOW_TO_ADD

        raise ValueError(f"family={family!r}: must be one of {', '.join(family_names())}; {HOW_TO_ADD}")
    contexts = resolve_contexts(family, config.get("contexts"))

    check_experts_section(_section(config, "experts"), family)
    check_dataset_section(_section(config, "dataset"))
    check_fit_section(_section(config, "fit"), family, context_dim(contexts))
    check_evaluate_section(_section(config, "evaluate"), family)
    return config


MAX_EPISODES_PER_TASK = 100_000
MAX_VIDEO_STEPS = 20_000
MAX_FIT_BATCH = 1 << 20
MAX_FIT_LIMITS = {"batch_size": MAX_FIT_BATCH, "tasks_per_batch": MAX_TASKS, "val_samples_per_task": 1 << 20,
                  "val_episodes": 10_000}
MAX_MODEL_WIDTH, MAX_MODEL_LAYERS = 65_536, 64


def context_dim(contexts: Sequence[Mapping[str, float]]) -> int:
    """How many context features vary over the tasks (the models' context input; at least 1)."""
    names = {k for c in contexts for k in c}
    return max(1, sum(1 for n in names if len({c.get(n) for c in contexts}) > 1))


def _check_model_bounds(model: Mapping) -> None:
    """Widths and sizes of fit.model (any field named *dim*/*size*) within bounds, before anything is built."""
    for key, value in model.items():
        if "dim" not in key and "size" not in key:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and len(value) > MAX_MODEL_LAYERS:
            raise ValueError(f"fit.model.{key}: {len(value)} entries, at most {MAX_MODEL_LAYERS}")
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_MODEL_WIDTH:
                raise ValueError(f"fit.model.{key}={v}: must be <= {MAX_MODEL_WIDTH}")


def model_parameters(fit: Mapping, family: str, context_dim: int) -> dict[str, int]:
    """method -> parameter count, by building each method's model on torch's meta device (no memory, no data):
    a fit.model the model refuses (e.g. embed_dims: []) is a ValueError naming fit.model before anything runs."""
    import torch

    from hyperzero.envs import get_family
    from hyperzero.models.registry import build_method

    fam = get_family(family)
    counts = {}
    for method in fit["methods"]:
        cfg = fit_config(fit, method, fit["seeds"][0])
        try:
            with torch.device("meta"):
                model = build_method(method, context_dim, fam.obs_dim, fam.act_dim, cfg.model)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AssertionError) as e:
            raise ValueError(f"fit.model: method {method} cannot be built with this model config "
                             f"({type(e).__name__}: {e})") from None
        except Exception:  # noqa: BLE001 - a model that cannot be built on the meta device is checked when fitted
            continue
        counts[method] = sum(p.numel() for p in model.parameters())
    return counts


def _check_fit_section(fit: Mapping, family: str | None = None, context_dim: int = 1) -> None:
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
    for key, limit in MAX_FIT_LIMITS.items():
        if isinstance(fit.get(key), int) and fit[key] > limit:
            raise ValueError(f"fit.{key}={fit[key]}: must be <= {limit}")
    _check_model_bounds(fit.get("model") or {})
    for method in fit["methods"]:
        _stage_check("fit", lambda method=method: fit_config(fit, method, fit["seeds"][0]).check())
    if family is not None:
        model_parameters(fit, family, context_dim)


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


# ------------------------------------------------------------------------------------------ typed config
def section_classes() -> dict[str, list[tuple[type, tuple[str, ...]]]]:
    """Section -> the dataclasses whose fields it holds, each with the fields the pipeline leaves out. The
    commands' options are generated from these (hyperzero.cli.flags), so this is where a new field is found."""
    from hyperzero.evaluation import EvalConfig
    from hyperzero.experts.solvers import SOLVERS, get_solver
    from hyperzero.training.config import FitConfig

    # every solver's config fields: a field two solvers share is listed (and gets its option) once
    solver_classes, seen = [], set()
    for name in SOLVERS:
        cls = get_solver(name).config_class
        fields = tuple(f.name for f in dataclasses.fields(cls))
        solver_classes.append((cls, tuple(f for f in fields if f in seen)))
        seen.update(fields)
    return {"experts": [*solver_classes, (ExpertSweepSettings, ())],
            "dataset": [(DatasetSettings, ())],
            "fit": [(FitSweep, ()), (FitConfig, ("method", "seed"))],
            "evaluate": [(EvalConfig, ("methods", "seeds"))]}


@dataclasses.dataclass
class ExpertsSection:
    """The `experts:` section, typed: the solver's config (its profile with the section's keys on top) and the
    pipeline's settings of the sweep."""

    solver: Any = dataclasses.field(default_factory=lambda: profile_config(ExpertSweepSettings().profile))  # TD3Config
    settings: ExpertSweepSettings = dataclasses.field(default_factory=ExpertSweepSettings)

    @classmethod
    def from_dict(cls, section: Mapping) -> "ExpertsSection":
        values = dict(section)
        sweep = {k: values.pop(k) for k in SWEEP_KEYS if k in values}
        gate = GateConfig(**(sweep.pop("gate", None) or {}))
        chain = ChainConfig(**(sweep.pop("chain", None) or {}))
        settings = ExpertSweepSettings(**sweep, gate=gate, chain=chain)
        return cls(solver=profile_config(settings.profile, solver=settings.solver, **values), settings=settings)

    @property
    def gate(self) -> GateConfig | None:
        """The quality gate, or None when it is turned off."""
        return self.settings.gate if self.settings.gate.enabled else None

    def packing(self) -> dict[str, Any]:
        """How the experts are packed into processes and threads (recorded in run_info.json: it can change
        the numbers, see docs/reliability.md)."""
        from hyperzero.utils.workers import default_threads

        workers = self.settings.num_workers or os.cpu_count() or 1
        return {"experts_ensemble_size": self.settings.ensemble_size, "experts_num_workers": self.settings.num_workers,
                "experts_num_workers_default": workers,
                "experts_torch_threads": self.solver.torch_threads or default_threads(workers)}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.settings), **self.solver.to_dict()}


@dataclasses.dataclass
class FitSection:
    """The `fit:` section, typed: which fits (FitSweep) and the settings they share (a FitConfig whose method and
    seed are set per fit by `config_for`)."""

    sweep: FitSweep = dataclasses.field(default_factory=FitSweep)
    base: Any = dataclasses.field(default_factory=lambda: fit_config({}, "hyperzero", 0))  # a FitConfig

    @classmethod
    def from_dict(cls, section: Mapping) -> "FitSection":
        values = dict(section)
        sweep = FitSweep(**{k: values.pop(k) for k in FIT_SWEEP_KEYS if k in values})
        return cls(sweep=sweep, base=fit_config(values, sweep.methods[0] if sweep.methods else "hyperzero", 0))

    def config_for(self, method: str, seed: int, device: str | None = None):
        """The FitConfig of one fit; `device` (--device) replaces fit.device."""
        return dataclasses.replace(self.base, method=method, seed=int(seed), **({"device": device} if device else {}))

    def configs(self, device: str | None = None) -> list:
        """Every fit the pipeline runs, methods x split seeds, in that order."""
        return [self.config_for(m, s, device) for m in self.sweep.methods for s in self.sweep.seeds]

    def packing(self) -> dict[str, Any]:
        """How the local executor spreads the fits over processes and threads (recorded in run_info.json)."""
        import torch

        from hyperzero.training.sweep import local_fit_workers
        from hyperzero.utils.workers import default_threads

        workers = local_fit_workers(self.sweep.num_workers, len(self.sweep.methods) * len(self.sweep.seeds))
        threads = self.base.num_threads or (default_threads(workers) if workers > 1 else torch.get_num_threads())
        return {"fit_num_workers_local": workers, "fit_num_threads": threads}

    def to_dict(self) -> dict:
        base = dataclasses.asdict(self.base)
        base.pop("method"), base.pop("seed")
        base["model"]["embed_dims"] = list(base["model"]["embed_dims"])
        return {**dataclasses.asdict(self.sweep), **base}


@dataclasses.dataclass
class PipelineConfig:
    """A whole pipeline config, typed: every section as its stage's dataclasses (`resolve_pipeline_config`)."""

    name: str = ""  # a label for reports
    description: str = ""  # one line shown by `hyperzero run --list`
    family: Optional[str] = None  # a registered family (`hyperzero envs`)
    contexts: Optional[dict] = None  # exactly one of grid / sample / list
    experts: ExpertsSection = dataclasses.field(default_factory=ExpertsSection)  # solver config + sweep settings
    dataset: DatasetSettings = dataclasses.field(default_factory=DatasetSettings)  # rollout collection
    fit: FitSection = dataclasses.field(default_factory=FitSection)  # which fits, and their shared settings
    evaluate: Any = dataclasses.field(default_factory=lambda: _eval_config({}))  # an EvalConfig (methods and
    #   seeds unset: every fit)
    # The keys the config it was made from lists, in its order ({key: None or nested}); None = every key.
    # config.yaml lists exactly these, so a run written before a field existed still compares equal.
    listed: Optional[dict] = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, config: Mapping) -> "PipelineConfig":
        """A resolved config (`resolve_config`'s plain data) -> typed; missing keys take the dataclass defaults."""
        full = deep_merge(DEFAULTS, config)
        return cls(name=full["name"] or "", description=full["description"] or "", family=full["family"],
                   contexts=copy.deepcopy(full["contexts"]), experts=ExpertsSection.from_dict(full["experts"] or {}),
                   dataset=DatasetSettings(**(full["dataset"] or {})), fit=FitSection.from_dict(full["fit"] or {}),
                   evaluate=_eval_config(full["evaluate"] or {}), listed=_key_tree(full))

    def to_dict(self, every_key: bool = False) -> dict:
        """Plain data, accepted back by `resolve_config` and `from_dict`: the keys of the config this was made
        from (`listed`), or with `every_key` (or when unknown) every key, defaults included."""
        evaluate = dataclasses.asdict(self.evaluate)
        evaluate.pop("methods"), evaluate.pop("seeds")
        evaluate["few_shot_k"] = list(evaluate["few_shot_k"])
        full = {"name": self.name, "description": self.description, "family": self.family,
                "contexts": copy.deepcopy(self.contexts), "experts": self.experts.to_dict(),
                "dataset": dataclasses.asdict(self.dataset), "fit": self.fit.to_dict(), "evaluate": evaluate}
        return full if every_key or self.listed is None else _project(full, self.listed)

    def eval_config(self):
        """The EvalConfig of the pipeline's evaluation: the `evaluate:` section over every fit it ran."""
        return dataclasses.replace(self.evaluate, methods=list(self.fit.sweep.methods),
                                   seeds=[int(s) for s in self.fit.sweep.seeds])

    def packing_record(self) -> dict[str, Any]:
        """What can change the numbers besides the config: how experts and fits are packed and threaded, and the
        machine."""
        from hyperzero.utils.hardware import numerics_record

        return {**self.experts.packing(), **self.fit.packing(), **numerics_record()}


def _key_tree(config: Mapping) -> dict:
    return {k: _key_tree(v) if isinstance(v, Mapping) else None for k, v in config.items()}


def _project(values: Mapping, keys: Mapping) -> dict:
    """`values` with only the keys of `keys` (a `_key_tree`), in its order."""
    return {k: _project(values[k], sub) if isinstance(sub, dict) and isinstance(values[k], Mapping) else values[k]
            for k, sub in keys.items()}


def _eval_config(values: Mapping):
    from hyperzero.evaluation import EvalConfig

    return EvalConfig(**values)


def resolve_pipeline_config(raw: Mapping, overrides: Sequence[str] = ()) -> PipelineConfig:
    """`resolve_config`, typed."""
    return PipelineConfig.from_dict(resolve_config(raw, overrides))


# Sections a stage command reads from --config / --set: the experts' training also takes the family and tasks.
STAGE_SECTIONS = {"experts": ("family", "contexts", "experts"), "dataset": ("dataset",), "fit": ("fit",),
                  "evaluate": ("evaluate",)}


def stage_section(stage: str, source: str | Path | Mapping | None, overrides: Sequence[str],
                  values: Mapping[str, Any]) -> dict:
    """The settings one stage command runs with: dataclass defaults < the config's sections < `--set` items <
    option values (dotted keys `<section>.<key>` -> parsed values). Returns {section: value} for the stage's
    sections (STAGE_SECTIONS), for the caller to check with the section's check; an `--set` of another section
    or of a key the stage does not have is refused naming the allowed ones."""
    sections = STAGE_SECTIONS[stage]
    allowed: list[str] = []
    for section in sections:
        for cls, left_out in section_classes().get(section, []):
            if stage == "evaluate":
                left_out = ()  # `hyperzero evaluate` can restrict methods and seeds; the pipeline evaluates every fit
            allowed += [f"{section}.{f.name}" for f in dataclasses.fields(cls) if f.name not in left_out]
    raw = load_config_source(source)[0] if source is not None else {}
    config = {s: copy.deepcopy(raw[s]) for s in sections if s in raw}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        section, _, field = key.partition(".")
        if section not in sections:
            raise ValueError(f"--set {key}: this command reads only {', '.join(sections)} "
                             f"(`hyperzero run` takes the other sections)")
        if section in section_classes() and field and f"{section}.{field.split('.', 1)[0]}" not in allowed:
            raise ValueError(f"--set {key}: unknown key; this command takes {', '.join(allowed)}")
    config = apply_overrides(config, overrides)
    for key, value in values.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = dict(node.get(part) or {})
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    for section in sections:
        if isinstance(DEFAULTS.get(section), dict):
            config[section] = deep_merge(DEFAULTS[section], _section(config, section))
    return config
