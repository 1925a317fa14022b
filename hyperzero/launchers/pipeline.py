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

from hyperzero.launchers.config import PipelineConfig, resolve_contexts, resolve_pipeline_config
from hyperzero.launchers.config_files import load_config_source, override_items
from hyperzero.launchers.resources import check_device_names, check_local_devices, check_memory
from hyperzero.launchers.rundir import (check_and_write_config, check_experts_source, link_experts,
                                        linked_experts_source, prepare_run_dir, previous_config, run_dir_for)
from hyperzero.utils.integrity import CorruptFileError, remove_temp_files, verify
from hyperzero.utils.io import atomic_write_json, ensure_directory, read_json
from hyperzero.utils.lock import run_dir_lock
from hyperzero.utils.outputs import rel, say, set_aside
from hyperzero.utils.runinfo import write_run_info

# the run-directory helpers live in launchers/rundir.py (and override_items in config.py), importable from here as before
__all__ = ["STAGES", "Runtime", "override_items", "prepare_run_dir", "previous_config", "run_dir_for", "run_pipeline"]

STAGES = ("experts", "dataset", "fits", "eval", "report")


@dataclass
class Runtime:
    executor: str = "local"        # local | ray
    address: str | None = None     # Ray cluster address (executor=ray); None starts a local Ray
    device: str | None = None      # overrides experts.device and fit.device (auto | cpu | cuda)
    progress: bool = True


# ------------------------------------------------------------------------------------------ stages
# Each stage's rules (what is finished, resumable, damaged or stale) live in its package's `outputs` module.
def run_experts_stage(run_dir: Path, config: PipelineConfig, runtime: Runtime) -> None:
    from hyperzero.envs import context_id
    from hyperzero.experts import train_experts
    from hyperzero.experts.outputs import check_expert, check_packing, expert_check

    contexts = resolve_contexts(config.family, config.contexts)
    experts_dir = run_dir / "experts"
    check_packing(run_dir)
    finished = [c for c in contexts if check_expert(run_dir, experts_dir / context_id(c))]
    solver, gate, settings = config.experts.solver, config.experts.gate, config.experts.settings
    if len(finished) == len(contexts) and (gate is None or (experts_dir / "gate.json").exists()):
        shutil.rmtree(experts_dir / ".shadow", ignore_errors=True)  # a redo killed just before its cleanup
        say(f"experts: all {len(contexts)} experts finished and valid; skipped")
        return
    if runtime.device:
        solver = dataclasses.replace(solver, device=runtime.device)
    say(f"experts: {len(finished)}/{len(contexts)} finished; training the rest")
    train_experts(config.family, contexts, experts_dir, solver, ensemble_size=settings.ensemble_size,
                  num_workers=settings.num_workers, executor=runtime.executor, ray_address=runtime.address,
                  progress=runtime.progress, gate=gate, chain=settings.chain)
    bad = [context_id(c) for c in contexts if not expert_check(experts_dir / context_id(c)).ok]
    if bad:
        raise RuntimeError(f"experts {bad} did not finish; rerun the same command to resume")


def run_dataset_stage(run_dir: Path, config: PipelineConfig, runtime: Runtime) -> None:
    from hyperzero.datasets import collect_dataset
    from hyperzero.datasets.outputs import dataset_check
    from hyperzero.envs import context_id

    dataset_dir = run_dir / "dataset"
    experts_dir = run_dir / "experts"
    expected = {context_id(c) for c in resolve_contexts(config.family, config.contexts)}
    settings = config.dataset
    check = dataset_check(dataset_dir, expected, settings.n_episodes, experts_dir, run_dir)
    if check.ok:
        say(f"dataset: complete and valid ({len(expected)} tasks); skipped")
        return
    if check.bucket:
        check.set_aside(run_dir, dataset_dir, f"dataset {check.reason}")
    say(f"dataset: collecting ({check.reason})")
    collect_dataset(experts_dir, dataset_dir, n_episodes=settings.n_episodes, seed=settings.seed,
                    exclude_flagged=settings.exclude_flagged, action_noise=settings.action_noise,
                    progress=runtime.progress)
    check = dataset_check(dataset_dir, expected, settings.n_episodes, experts_dir)
    if not check.ok:
        raise RuntimeError(f"{dataset_dir}: the collected dataset {check.reason}")
    excluded = read_json(dataset_dir / "manifest.json").get("excluded_tasks", [])
    if excluded:
        say(f"dataset: left out {len(excluded)} task(s) whose expert failed the quality gate: "
            f"{', '.join(e['task_id'] if isinstance(e, dict) else str(e) for e in excluded)} "
            "(experts/gate.json says why; dataset.exclude_flagged=false keeps them)")


def run_fits_stage(run_dir: Path, config: PipelineConfig, runtime: Runtime) -> None:
    from hyperzero.datasets.format import read_manifest
    from hyperzero.training.outputs import check_enough_tasks, check_fit, fit_check
    from hyperzero.training.sweep import fit_dir, fit_sweep

    manifest = read_manifest(run_dir / "dataset")
    tasks = {e["task_id"]: e["sha256"] for e in manifest["tasks"]}
    inputs = (tasks, manifest["family"], manifest["context_names"])
    configs = config.fit.configs(runtime.device)
    check_enough_tasks(run_dir, configs[:len(config.fit.sweep.seeds)], manifest)
    todo = [c for c in configs if not check_fit(run_dir, fit_dir(run_dir, c.method, c.seed), *inputs)]
    if not todo:
        say(f"fits: all {len(configs)} fits complete and valid; skipped")
        return
    say(f"fits: {len(configs) - len(todo)}/{len(configs)} complete; fitting {len(todo)} "
        f"(executor={runtime.executor})")
    fit_sweep(run_dir, todo, num_workers=config.fit.sweep.num_workers, executor=runtime.executor,
              address=runtime.address, progress=runtime.progress)
    bad = [f"{c.method}/seed_{c.seed}" for c in configs
           if not fit_check(fit_dir(run_dir, c.method, c.seed), *inputs).ok]
    if bad:
        raise RuntimeError(f"fits {bad} did not complete; rerun the same command to resume")


def run_eval_stage(run_dir: Path, config: PipelineConfig, runtime: Runtime) -> None:
    from hyperzero.evaluation import evaluate
    from hyperzero.evaluation.outputs import check_eval, eval_is_current, media_check, restore_expert_returns

    cfg = config.eval_config()
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


def run_report_stage(run_dir: Path, config: PipelineConfig, runtime: Runtime) -> None:
    from hyperzero.evaluation.report import write_report

    md, page = write_report(run_dir)
    say(f"report: {md} and {page}")


STAGE_FUNCTIONS: dict[str, Callable[[Path, PipelineConfig, Runtime], None]] = {
    "experts": run_experts_stage, "dataset": run_dataset_stage, "fits": run_fits_stage,
    "eval": run_eval_stage, "report": run_report_stage,
}


# ------------------------------------------------------------------------------------------ the run
def run_pipeline(source: str | Path | Mapping, out_dir: str | Path | None = None,
                 overrides: Sequence[str] | Mapping[str, Any] = (), force: bool = False,
                 runtime: Runtime | None = None, stop_after: str | None = None,
                 experts_from: str | Path | None = None) -> Path:
    """Run (or resume) every stage of `source` in `out_dir`; returns the run directory. The Python form of
    `hyperzero run` (docs/pipeline.md, "From Python").

    `source` is a preset name, a YAML file, or a config mapping with the same sections (`family`, `contexts`,
    `experts`, `dataset`, `fit`, `evaluate`; tuples, paths and numpy numbers are taken as lists, strings and
    numbers). `overrides` are `--set` items ("fit.seeds=[0,1]") or a mapping of dotted keys to values
    ({"fit.seeds": [0, 1]}). Without `out_dir` the run goes to runs/<name> (a mapping without a name: runs/<family>).

        from hyperzero.launchers.pipeline import run_pipeline
        run_dir = run_pipeline({"family": "cheetah-run", "contexts": {"grid": {"speed": [-4, 2, 4]}}},
                               out_dir="runs/mine", overrides={"experts.train_steps": 2000})

    `experts_from` is another run directory whose finished experts this run uses (hard links; same family,
    contexts and experts section, else refused): e.g. the same experts under another split protocol.

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
    config = resolve_pipeline_config(raw, overrides)
    check_device_names(config, runtime.device)
    if runtime.executor == "local":  # Ray workers may run elsewhere: their hardware counts, not this machine's
        check_local_devices(config, runtime.device)
        check_memory(config)
    experts_source = None if experts_from is None else check_experts_source(experts_from, config)
    run_dir = ensure_directory(run_dir_for(config, source, out_dir), "run directory (--out)")
    with run_dir_lock(run_dir):
        leftovers = remove_temp_files(run_dir)
        if leftovers:
            say(f"removed {len(leftovers)} temporary file(s) left by an interrupted write "
                f"({', '.join(rel(run_dir, p) for p in leftovers[:3])}{' ...' if len(leftovers) > 3 else ''})")
        check_and_write_config(run_dir, config, where, force)
        if experts_source is not None:
            link_experts(experts_source, run_dir, config)
        experts_source = linked_experts_source(run_dir)  # also when a linked run resumes without --experts-from
        info_path = run_dir / "run_info.json"  # the previous invocation's record: replaced, but not without a word
        if info_path.exists():
            try:
                verify(info_path)
            except CorruptFileError as e:
                set_aside(run_dir, info_path, f"{e.reason}; a new one is written")
        write_run_info(run_dir, config.to_dict(), seeds={"experts": config.experts.solver.seed,
                                                         "dataset": config.dataset.seed,
                                                         "fit": list(config.fit.sweep.seeds)},
                       stage="pipeline", source=where if isinstance(source, Mapping) else str(source),
                       overrides=list(overrides), packing=config.packing_record(),
                       runtime={"executor": runtime.executor, "address": runtime.address, "device": runtime.device},
                       experts_from=None if experts_source is None else str(experts_source))
        _run_stages(run_dir, config, runtime, stop_after)
    return run_dir


def _run_stages(run_dir: Path, config: PipelineConfig, runtime: Runtime, stop_after: str | None) -> None:
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
