"""`hyperzero run`: experts -> dataset -> fits (methods x split seeds) -> evaluation -> report.

Nothing is trusted that was not verified. Every file a rerun relies on carries a sha256 recorded when
it was written (`hyperzero.utils.integrity`); before a stage skips or resumes work it checks them. A
damaged file is named, moved aside into `<run>/corrupt/`, and the smallest unit of work is redone: one
expert (a damaged unfinished checkpoint restarts that task), one dataset task file, one fit, or the
evaluation of the affected fits. Work made from inputs that changed since (a retrained expert) is
moved to `<run>/stale/` and redone: its dataset task, then the fits trained on that task, then their
evaluation. Unfinished work is resumed by the stage itself (expert checkpoints, per-task dataset
files, fit checkpoints, per-fit evaluation rows), so rerunning the same command after a crash or a
kill continues where it stopped. One command at a time writes a run directory (`run_dir_lock`).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hyperzero.launchers.config import (check_memory, config_differences, dump_yaml, expert_settings, fit_config,
                                        incompatible, invalidated_stages, load_config_source, resolve_config,
                                        resolve_contexts)
from hyperzero.utils.integrity import CorruptFileError, read_verified_bytes, remove_temp_files, verify
from hyperzero.utils.io import atomic_write_json, atomic_write_text, ensure_directory, read_json
from hyperzero.utils.lock import run_dir_lock
from hyperzero.utils.outputs import adopt, rel, say, set_aside
from hyperzero.utils.runinfo import write_run_info

STAGES = ("experts", "dataset", "fits", "eval", "report")


@dataclass
class Runtime:
    executor: str = "local"        # local | ray
    address: str | None = None     # Ray cluster address (executor=ray); None starts a local Ray
    device: str | None = None      # overrides experts.device and fit.device (auto | cpu | cuda)
    progress: bool = True


# ------------------------------------------------------------------------------------------ config / run dir
def run_dir_for(config: dict, source: str | Mapping, out_dir: str | Path | None) -> Path:
    if out_dir:
        return Path(out_dir)
    if isinstance(source, Mapping):
        return Path("runs") / (config.get("name") or config["family"])
    return Path("runs") / (config.get("name") or Path(source).stem)


def previous_config(run_dir: Path) -> dict | None:
    """The config an existing run directory was made with: config.yaml, else run_info.json's copy.

    A damaged config.yaml is moved aside (named) and run_info.json is used instead; None when neither
    can be trusted (or the directory is new).
    """
    import yaml

    from hyperzero.launchers.config import load_yaml

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


def _check_and_write_config(run_dir: Path, config: dict, where: str, force: bool) -> None:
    old = previous_config(run_dir)
    if old is not None:
        diffs = config_differences(old, config)
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
    atomic_write_text(run_dir / "config.yaml", f"# resolved from {where}\n" + dump_yaml(config))


def prepare_run_dir(source: str | Mapping, out_dir: str | Path | None, overrides: Sequence[str] = (),
                    force: bool = False) -> tuple[Path, dict]:
    """Resolve the config (nothing is written if it is refused), create or check the run directory, write
    `config.yaml`. Holds the run directory's lock while it writes."""
    raw, where = load_config_source(source)
    config = resolve_config(raw, overrides)
    run_dir = ensure_directory(run_dir_for(config, source, out_dir), "run directory (--out)")
    with run_dir_lock(run_dir):
        _check_and_write_config(run_dir, config, where, force)
    return run_dir, config


# ------------------------------------------------------------------------------------------ stages
# Each stage's rules (what is finished, resumable, damaged or stale) live in its package's `outputs` module.
def run_experts_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.envs import context_id
    from hyperzero.experts import train_experts
    from hyperzero.experts.outputs import check_expert, check_packing, expert_check

    family = config["family"]
    contexts = resolve_contexts(family, config["contexts"])
    experts_dir = run_dir / "experts"
    check_packing(run_dir)
    finished = [c for c in contexts if check_expert(run_dir, experts_dir / context_id(c))]
    td3, gate, ensemble_size, num_workers = expert_settings(config["experts"])
    if len(finished) == len(contexts) and (gate is None or (experts_dir / "gate.json").exists()):
        shutil.rmtree(experts_dir / ".shadow", ignore_errors=True)  # a redo killed just before its cleanup
        say(f"experts: all {len(contexts)} experts finished and valid; skipped")
        return
    if runtime.device:
        td3 = dataclasses.replace(td3, device=runtime.device)
    say(f"experts: {len(finished)}/{len(contexts)} finished; training the rest")
    train_experts(family, contexts, experts_dir, td3, ensemble_size=ensemble_size, num_workers=num_workers,
                  executor=runtime.executor, ray_address=runtime.address, progress=runtime.progress, gate=gate)
    bad = [context_id(c) for c in contexts if not expert_check(experts_dir / context_id(c)).ok]
    if bad:
        raise RuntimeError(f"experts {bad} did not finish; rerun the same command to resume")


def run_dataset_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.datasets import collect_dataset
    from hyperzero.datasets.outputs import dataset_check
    from hyperzero.envs import context_id

    dataset_dir = run_dir / "dataset"
    experts_dir = run_dir / "experts"
    expected = {context_id(c) for c in resolve_contexts(config["family"], config["contexts"])}
    settings = config["dataset"]
    check = dataset_check(dataset_dir, expected, int(settings["n_episodes"]), experts_dir, run_dir)
    if check.ok:
        say(f"dataset: complete and valid ({len(expected)} tasks); skipped")
        return
    if check.bucket:
        check.set_aside(run_dir, dataset_dir, f"dataset {check.reason}")
    say(f"dataset: collecting ({check.reason})")
    collect_dataset(experts_dir, dataset_dir, n_episodes=int(settings["n_episodes"]),
                    seed=int(settings["seed"]), exclude_flagged=bool(settings.get("exclude_flagged", False)),
                    action_noise=float(settings.get("action_noise", 0.0)), progress=runtime.progress)
    check = dataset_check(dataset_dir, expected, int(settings["n_episodes"]), experts_dir)
    if not check.ok:
        raise RuntimeError(f"{dataset_dir}: the collected dataset {check.reason}")
    excluded = read_json(dataset_dir / "manifest.json").get("excluded_tasks", [])
    if excluded:
        say(f"dataset: left out {len(excluded)} task(s) whose expert failed the quality gate: "
            f"{', '.join(e['task_id'] if isinstance(e, dict) else str(e) for e in excluded)} "
            "(experts/gate.json says why; dataset.exclude_flagged=false keeps them)")


def run_fits_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.datasets.format import read_manifest
    from hyperzero.training.outputs import check_enough_tasks, check_fit, fit_check
    from hyperzero.training.sweep import fit_dir, fit_sweep

    fit_section = config["fit"]
    manifest = read_manifest(run_dir / "dataset")
    tasks = {e["task_id"]: e["sha256"] for e in manifest["tasks"]}
    inputs = (tasks, manifest["family"], manifest["context_names"])
    configs = [fit_config(fit_section, m, int(s), runtime.device) for m in fit_section["methods"]
               for s in fit_section["seeds"]]
    check_enough_tasks(run_dir, configs[:len(fit_section["seeds"])], manifest)
    todo = [c for c in configs if not check_fit(run_dir, fit_dir(run_dir, c.method, c.seed), *inputs)]
    if not todo:
        say(f"fits: all {len(configs)} fits complete and valid; skipped")
        return
    say(f"fits: {len(configs) - len(todo)}/{len(configs)} complete; fitting {len(todo)} "
        f"(executor={runtime.executor})")
    fit_sweep(run_dir, todo, num_workers=fit_section.get("num_workers"), executor=runtime.executor,
              address=runtime.address, progress=runtime.progress)
    bad = [f"{c.method}/seed_{c.seed}" for c in configs
           if not fit_check(fit_dir(run_dir, c.method, c.seed), *inputs).ok]
    if bad:
        raise RuntimeError(f"fits {bad} did not complete; rerun the same command to resume")


def eval_config(config: dict):
    from hyperzero.evaluation import EvalConfig

    section = dict(config.get("evaluate") or {})
    section["methods"] = list(config["fit"]["methods"])
    section["seeds"] = [int(s) for s in config["fit"]["seeds"]]
    return EvalConfig(**section)


def run_eval_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation import evaluate
    from hyperzero.evaluation.outputs import check_eval, eval_is_current, media_check, restore_expert_returns

    cfg = eval_config(config)
    moved = check_eval(run_dir)
    if eval_is_current(run_dir, cfg):
        media = media_check(run_dir, cfg, moved)
        if media.ok:
            restore_expert_returns(run_dir, cfg)
            say("evaluate: results are current; skipped")
            return
        say(f"evaluate: results are current but {media.reason}; remaking the summary, figures and videos (cached "
            "rows are reused)")
    else:
        say("evaluate: rolling out every fit on its held-out tasks (intact cached rows of unchanged fits are reused)")
    evaluate(run_dir, cfg, progress=runtime.progress)
    restore_expert_returns(run_dir, cfg)


def run_report_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation.report import write_report

    md, page = write_report(run_dir)
    say(f"report: {md} and {page}")


STAGE_FUNCTIONS: dict[str, Callable[[Path, dict, Runtime], None]] = {
    "experts": run_experts_stage, "dataset": run_dataset_stage, "fits": run_fits_stage,
    "eval": run_eval_stage, "report": run_report_stage,
}


def packing_record(config: dict) -> dict[str, Any]:
    """What can change the numbers besides the config: how experts are packed and threaded, and the CPU."""
    import torch

    from hyperzero.training.sweep import local_fit_workers
    from hyperzero.utils.hardware import cpu_model
    from hyperzero.utils.workers import default_threads

    experts, fit = config["experts"], config["fit"]
    cores = os.cpu_count() or 1
    workers = experts.get("num_workers") or cores
    fit_workers = local_fit_workers(fit.get("num_workers"), len(fit["methods"]) * len(fit["seeds"]))
    return {
        "experts_ensemble_size": experts.get("ensemble_size"),
        "experts_num_workers": experts.get("num_workers"),
        "experts_num_workers_default": workers,
        "experts_torch_threads": experts.get("torch_threads") or default_threads(workers),
        "fit_num_workers_local": fit_workers,
        "fit_num_threads": fit.get("num_threads") or (default_threads(fit_workers) if fit_workers > 1
                                                      else torch.get_num_threads()),
        "cpu_count": cores,
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "note": "see docs/reliability.md: float rounding of batched matmuls depends on threads and CPU kernels",
    }


def check_device_names(config: dict, runtime: Runtime) -> None:
    """Refuse a device name hyperzero cannot run on (e.g. --device tpu), naming the option or key."""
    from hyperzero.utils.torch_utils import DEVICE_FORMS, valid_device

    if runtime.device is not None and not valid_device(runtime.device):
        raise ValueError(f"--device {runtime.device!r}: must be {DEVICE_FORMS}")
    for section in ("experts", "fit", "evaluate"):
        device = (config.get(section) or {}).get("device")
        if device is not None and not valid_device(device):
            raise ValueError(f"{section}.device={device!r}: must be {DEVICE_FORMS}")


def check_local_devices(config: dict, runtime: Runtime) -> None:
    """Refuse a device this machine lacks (e.g. --device cuda without CUDA), or an experts' bf16 it would only
    emulate, before anything is written. Not for --executor ray: there the workers' hardware counts, not the
    driver's."""
    from hyperzero.utils.torch_utils import bf16_emulated_reason, resolve_device

    check_device_names(config, runtime)
    for section in ("experts", "fit"):
        device = runtime.device or config[section].get("device") or "auto"
        try:
            resolved = resolve_device(device)
        except ValueError:
            where, fix = ((f"--device {device}", "--device cpu (or auto)") if runtime.device else
                          (f"{section}.device={device}", f"--set {section}.device=auto (or cpu)"))
            raise ValueError(f"{where} was asked for, but CUDA is not available on this machine; use {fix}") from None
        if section == "experts" and config[section].get("precision") == "bf16":
            reason = bf16_emulated_reason(resolved)
            if reason:
                raise ValueError(f"experts.precision=bf16 was asked for, but {reason}; use --set "
                                 "experts.precision=auto (picks fp32 here) or fp32")


def run_pipeline(source: str | Path | Mapping, out_dir: str | Path | None = None,
                 overrides: Sequence[str] | Mapping[str, Any] = (), force: bool = False,
                 runtime: Runtime | None = None, stop_after: str | None = None) -> Path:
    """Run (or resume) every stage of `source` in `out_dir`; returns the run directory. The Python form of
    `hyperzero run` (docs/pipeline.md, "From Python").

    `source` is a preset name, a YAML file, or a config mapping with the same sections (`family`, `contexts`,
    `experts`, `dataset`, `fit`, `evaluate`; tuples, paths and numpy numbers are taken as lists, strings and
    numbers). `overrides` are `--set` items ("fit.seeds=[0,1]") or a mapping of dotted keys to values
    ({"fit.seeds": [0, 1]}). Without `out_dir` the run goes to runs/<name> (a mapping without a name: runs/<family>).

        from hyperzero.launchers.pipeline import run_pipeline
        run_dir = run_pipeline({"family": "cheetah-run", "contexts": {"grid": {"speed": [-4, 2, 4]}}},
                               out_dir="runs/mine", overrides={"experts.train_steps": 2000})

    The whole config is checked before anything is written; the run directory is locked for the
    duration (a second command on it is refused, naming this one).
    """
    overrides = override_items(overrides)
    runtime = runtime or Runtime()
    if runtime.executor not in ("local", "ray"):
        raise ValueError(f"--executor must be local or ray (got {runtime.executor!r})")
    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES} (got {stop_after!r})")
    raw, where = load_config_source(source)
    config = resolve_config(raw, overrides)
    check_device_names(config, runtime)
    if runtime.executor == "local":  # Ray workers may run elsewhere: their hardware counts, not this machine's
        check_local_devices(config, runtime)
        check_memory(config)
    run_dir = ensure_directory(run_dir_for(config, source, out_dir), "run directory (--out)")
    with run_dir_lock(run_dir):
        leftovers = remove_temp_files(run_dir)
        if leftovers:
            say(f"removed {len(leftovers)} temporary file(s) left by an interrupted write "
                f"({', '.join(rel(run_dir, p) for p in leftovers[:3])}{' ...' if len(leftovers) > 3 else ''})")
        _check_and_write_config(run_dir, config, where, force)
        info_path = run_dir / "run_info.json"  # the previous invocation's record: replaced, but not without a word
        if info_path.exists():
            try:
                verify(info_path)
            except CorruptFileError as e:
                set_aside(run_dir, info_path, f"{e.reason}; a new one is written")
        write_run_info(run_dir, config, seeds={"experts": config["experts"].get("seed"),
                                               "dataset": config["dataset"]["seed"], "fit": config["fit"]["seeds"]},
                       stage="pipeline", source=where if isinstance(source, Mapping) else str(source),
                       overrides=list(overrides), packing=packing_record(config),
                       runtime={"executor": runtime.executor, "address": runtime.address, "device": runtime.device})
        _run_stages(run_dir, config, runtime, stop_after)
    return run_dir


def override_items(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Overrides as `--set` items: a mapping {"fit.seeds": [0, 1]} becomes ["fit.seeds=[0, 1]"] (YAML values)."""
    if isinstance(overrides, Mapping):
        import yaml

        from hyperzero.launchers.config import ConfigDumper, plain_config

        def dumped(value) -> str:
            return yaml.dump(plain_config(value), Dumper=ConfigDumper, default_flow_style=True, width=10**9).strip()

        return [f"{key}={dumped(value)}".removesuffix("\n...") for key, value in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _run_stages(run_dir: Path, config: dict, runtime: Runtime, stop_after: str | None) -> None:
    t0 = time.time()
    timings_path = run_dir / "stage_times.json"
    history = []
    if timings_path.exists():
        try:
            history = read_json(timings_path)
        except (OSError, ValueError) as e:
            set_aside(run_dir, timings_path, f"{getattr(e, 'reason', e)}; timings start afresh")
    # The load average at each stage's end says whether its wall time was shared with other work on the machine.
    invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": {}, "cpus": os.cpu_count(),
                  "load_average": {}}
    history.append(invocation)
    atomic_write_json(timings_path, history)  # a run killed in its first stage still shows it was started
    for i, stage in enumerate(STAGES, start=1):
        say(f"stage {i}/{len(STAGES)}: {stage}")
        start = time.time()
        if stage == "report":  # the report shows this invocation's timings, so record them first
            invocation["seconds"]["total"] = round(time.time() - t0, 1)
            atomic_write_json(timings_path, history)
        STAGE_FUNCTIONS[stage](run_dir, config, runtime)
        invocation["seconds"][stage] = round(time.time() - start, 1)
        invocation["load_average"][stage] = [round(x, 2) for x in os.getloadavg()]
        atomic_write_json(timings_path, history)
        say(f"stage {stage} done in {time.time() - start:.1f} s")
        if stage == stop_after:
            break
    invocation["seconds"]["total"] = round(time.time() - t0, 1)
    atomic_write_json(timings_path, history)
    say(f"finished in {time.time() - t0:.1f} s: {run_dir}")
