"""A run directory's config: where a run goes, the config it was made with, and whether a new config may
resume it (`<run>/config.yaml`; what a change invalidates is in hyperzero.launchers.config)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from hyperzero.launchers.config import (PipelineConfig, config_differences, incompatible, invalidated_stages, resolve_contexts,
                                        resolve_pipeline_config)
from hyperzero.launchers.config_files import dump_yaml, load_config_source
from hyperzero.utils.integrity import CorruptFileError, read_verified_bytes
from hyperzero.utils.io import atomic_write_json, atomic_write_text, ensure_directory, read_json
from hyperzero.utils.lock import run_dir_lock
from hyperzero.utils.outputs import adopt, say, set_aside


def run_dir_for(config: PipelineConfig | Mapping, source: str | Path | Mapping, out_dir: str | Path | None) -> Path:
    """`out_dir`, else runs/<name> (a config without a name: runs/<family> for a mapping, runs/<file stem>)."""
    if out_dir:
        return Path(out_dir)
    if isinstance(config, PipelineConfig):
        name, family = config.name, config.family
    else:
        name, family = config.get("name"), config["family"]
    if isinstance(source, Mapping):
        return Path("runs") / (name or family)
    return Path("runs") / (name or Path(source).stem)


def previous_config(run_dir: Path) -> dict | None:
    """The config an existing run directory was made with: config.yaml, else run_info.json's copy.

    A damaged config.yaml is moved aside (named) and run_info.json is used instead; None when neither
    can be trusted (or the directory is new).
    """
    import yaml

    from hyperzero.launchers.config_files import load_yaml

    config_path = run_dir / "config.yaml"
    if config_path.exists():
        try:
            old = load_yaml(read_verified_bytes(config_path).decode("utf-8"))
            if not isinstance(old, dict) or not old:
                raise CorruptFileError(config_path, "is empty or not a YAML mapping")
            adopt(config_path)
            return old
        except (CorruptFileError, UnicodeDecodeError, yaml.YAMLError) as e:
            reason = e.reason if isinstance(e, CorruptFileError) else f"not readable YAML ({type(e).__name__})"
            set_aside(run_dir, config_path, reason)
    info_path = run_dir / "run_info.json"
    if info_path.exists():
        try:
            old = read_json(info_path).get("config")
            if isinstance(old, dict) and old:
                say("using the config recorded in run_info.json to check this run's outputs")
                return old
        except (CorruptFileError, AttributeError):
            set_aside(run_dir, info_path, "damaged")
    if (run_dir / "experts").exists():
        say("the previous config of this run is unknown (config.yaml and run_info.json are missing or damaged); "
            "each stage's own checks decide what is reused")
    return None


def check_and_write_config(run_dir: Path, config: PipelineConfig, where: str, force: bool) -> None:
    """Compare `config` with the one the run was made with: a change that would make its outputs wrong is refused
    (or, with `force`, the stages it invalidates are moved to <run>/stale/); then write config.yaml."""
    plain = config.to_dict()
    old = previous_config(run_dir)
    if old is not None:
        diffs = config_differences(old, plain)
        blocking = incompatible(diffs)
        if blocking and not force:
            raise ValueError(f"{run_dir} was made with a different config ({', '.join(blocking[:6])}"
                             f"{' ...' if len(blocking) > 6 else ''} differ); its outputs would not match. Use a "
                             f"new --out directory, or pass --force to redo the affected stages (old outputs are "
                             f"moved to {run_dir / 'stale'}/)")
        if blocking:
            for stage in invalidated_stages(diffs):
                path = run_dir / stage
                if path.exists():
                    set_aside(run_dir, path, f"config changed ({', '.join(blocking[:3])})", bucket="stale")
        elif diffs:
            say(f"config changes that only add work or redo evaluation: {', '.join(diffs)}")
    atomic_write_text(run_dir / "config.yaml", f"# resolved from {where}\n" + dump_yaml(plain))


def prepare_run_dir(source: str | Path | Mapping, out_dir: str | Path | None, overrides: Sequence[str] = (),
                    force: bool = False) -> tuple[Path, PipelineConfig]:
    """Resolve the config (nothing is written if it is refused), create or check the run directory, write
    `config.yaml`. Holds the run directory's lock while it writes."""
    raw, where = load_config_source(source)
    config = resolve_pipeline_config(raw, overrides)
    run_dir = ensure_directory(run_dir_for(config, source, out_dir), "run directory (--out)")
    with run_dir_lock(run_dir):
        check_and_write_config(run_dir, config, where, force)
    return run_dir, config


# Keys of the `experts:` section that only say how the experts are trained, not what they are.
EXPERT_SCHEDULING_KEYS = ("experts.num_workers",)
EXPERTS_SOURCE = "experts_source.json"  # in <run>/experts/: where a linked experts/ folder came from


def check_experts_source(source_run: str | Path, config: PipelineConfig) -> Path:
    """The run directory whose finished experts a new run may use (`hyperzero run --experts-from`), checked before
    anything is written: it must have been made with the same family and `experts:` section, its task grid must
    contain every task of this run (the same grid, or a denser one this run's is part of), and every expert this
    run uses (and its gate, if any) must be finished and intact, since an unfinished expert would keep training
    into files both runs share. Returns its absolute path; refused naming the difference otherwise."""
    import yaml

    from hyperzero.envs import context_id
    from hyperzero.experts.outputs import expert_check
    from hyperzero.launchers.config_files import load_yaml

    source_run = Path(source_run).resolve()
    config_path = source_run / "config.yaml"
    if not config_path.exists():
        raise ValueError(f"--experts-from {source_run}: no config.yaml there; give the directory of a `hyperzero run`")
    try:
        source_config = load_yaml(read_verified_bytes(config_path).decode("utf-8"))
    except (CorruptFileError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"--experts-from {source_run}: its config.yaml cannot be trusted "
                         f"({getattr(e, 'reason', type(e).__name__)}); resume that run first") from e
    differ = [d for d in config_differences(source_config, config.to_dict())
              if d.split(".")[0] in ("family", "experts") and d not in EXPERT_SCHEDULING_KEYS]
    if differ:
        raise ValueError(f"--experts-from {source_run}: its experts were made with another config "
                         f"({', '.join(differ[:6])}{' ...' if len(differ) > 6 else ''} differ); give a run whose "
                         f"family and experts sections are this config's")
    tasks = [context_id(c) for c in resolve_contexts(config.family, config.contexts)]
    source_tasks = {context_id(c) for c in resolve_contexts(source_config["family"], source_config["contexts"])}
    missing = [t for t in tasks if t not in source_tasks]
    if missing:
        raise ValueError(f"--experts-from {source_run}: its grid has no expert for task(s) {missing[:4]}"
                         f"{' ...' if len(missing) > 4 else ''} of this run; give a run whose grid contains every "
                         f"task of this one")
    unfinished = [t for t in tasks if not expert_check(source_run / "experts" / t).ok]
    if unfinished:
        raise ValueError(f"--experts-from {source_run}: experts {unfinished[:4]}{' ...' if len(unfinished) > 4 else ''}"
                         f" are not finished and intact; run `hyperzero run` on {source_run} first")
    if config.experts.gate is not None and not (source_run / "experts" / "gate.json").exists():
        raise ValueError(f"--experts-from {source_run}: its quality gate has not run (no experts/gate.json); "
                         f"finish that run's experts stage first")
    return source_run


def linked_experts_source(run_dir: Path) -> Path | None:
    """The run whose experts `run_dir/experts/` holds as links (its marker), None when they are the run's own: a
    resumed run records its source even when `--experts-from` is not given again."""
    marker = run_dir / "experts" / EXPERTS_SOURCE
    return Path(read_json(marker)["run"]) if marker.exists() else None


def link_experts(source_run: Path, run_dir: Path, config: PipelineConfig) -> None:
    """Give `run_dir` the experts of its tasks from a run `check_experts_source` accepted, as hard links (copies
    across file systems), with the source's stage records (gate, chain, packing: how the experts were made, over
    the source's whole grid). Linking again from the same source is a no-op; `run_dir` having other experts is
    an error."""
    from hyperzero.envs import context_id

    experts_dir = run_dir / "experts"
    if experts_dir.exists():
        if linked_experts_source(run_dir) == source_run:
            return
        raise ValueError(f"--experts-from {source_run}: {experts_dir} exists already (its own experts, or linked from "
                         f"another run); use a new --out directory, or drop --experts-from to resume this run")
    staging = run_dir / "experts.linking"
    shutil.rmtree(staging, ignore_errors=True)  # a link killed half-way
    tasks = [context_id(c) for c in resolve_contexts(config.family, config.contexts)]
    source_dir = source_run / "experts"
    # the other tasks of a denser source grid stay there: every stage of this run sees only its own tasks
    other_tasks = {p.name for p in source_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and p.name not in tasks}
    shutil.copytree(source_dir, staging, copy_function=_link_or_copy,
                    ignore=lambda folder, names: [n for n in names if n == ".shadow" or
                                                  (Path(folder) == source_dir and n in other_tasks)])
    record: dict[str, Any] = {"run": str(source_run)}
    if other_tasks:
        record["tasks"] = list(tasks)  # part of the source's grid
    atomic_write_json(staging / EXPERTS_SOURCE, record)
    os.replace(staging, experts_dir)
    part = f" ({len(tasks)} of its {len(tasks) + len(other_tasks)} tasks)" if other_tasks else ""
    say(f"experts: linked the finished experts of {source_run}{part}")


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (every later write to a run replaces files, never changes them in place), or a copy where the
    two runs are on different file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
