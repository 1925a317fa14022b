"""A run directory's config: where a run goes, the config it was made with, and whether a new config may
resume it (`<run>/config.yaml`; what a change invalidates is in hyperzero.launchers.config)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from hyperzero.launchers.config import PipelineConfig, config_differences, incompatible, invalidated_stages, resolve_pipeline_config
from hyperzero.launchers.config_files import dump_yaml, load_config_source
from hyperzero.utils.integrity import CorruptFileError, read_verified_bytes
from hyperzero.utils.io import atomic_write_text, ensure_directory, read_json
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
