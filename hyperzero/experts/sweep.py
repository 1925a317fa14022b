"""Sweeps: many tasks -> ensembles -> worker processes (local) or Ray tasks, resumable and idempotent."""
from __future__ import annotations

import dataclasses
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

from hyperzero.experts.config import TD3Config
from hyperzero.experts.gate import GateConfig, judge, warm_start_source
from hyperzero.experts.trainer import (EXPERT, SUMMARY, TaskSpec, ceil_div, checkpoint_step,
                                       dynamics_key, is_finished, train_group)
from hyperzero.utils.io import atomic_copy, atomic_write_json, read_json
from hyperzero.utils.ray_local import start_ray
from hyperzero.utils.runinfo import write_run_info
from hyperzero.utils.torch_utils import resolve_device
from hyperzero.utils.workers import default_threads, exit_with_parent

EXECUTORS = ("local", "ray")
MAX_ENSEMBLE = 8  # bf16 throughput saturates around N=8-16 (docs/benchmarks-experts.md); fp32 gains nothing beyond
# One GPU (docs/benchmarks-experts.md (l)): 32 tasks ran as 4 workers x 8 members in 52 s and as 1 x 32 in 56 s,
# while one worker per core (16 x 2) had not finished after 100 s. Ensembles grow to 32 members there.
MAX_GPU_WORKERS, MAX_GPU_ENSEMBLE = 4, 32


def default_packing(pending: int, cores: int, on_gpu: bool, num_workers: int | None = None,
                    ensemble_size: int | None = None) -> tuple[int, int]:
    """(workers, members per ensemble) for `pending` tasks where neither is given: one worker per core on a
    CPU, at most 4 sharing one GPU; the tasks spread evenly over the workers, within the ensemble cap."""
    workers = num_workers or min(MAX_GPU_WORKERS if on_gpu else cores, cores, pending)
    size = ensemble_size or min(MAX_GPU_ENSEMBLE if on_gpu else MAX_ENSEMBLE, ceil_div(pending, workers))
    return workers, size


def plan_tasks(family: str, contexts: Sequence[Mapping[str, float]], out_dir: Path, seed: int,
               allow_extrapolation: bool = False) -> list[TaskSpec]:
    from hyperzero.envs import context_id, get_family

    if not contexts:
        raise ValueError("no contexts to train: give --grid, --contexts or --sample")
    space = get_family(family).context_space
    tasks, seen = [], set()
    for ctx in contexts:
        full = space.validate(ctx, allow_extrapolation)
        tid = context_id(full)
        if tid in seen:
            continue  # duplicates in a grid are harmless: one expert per task
        seen.add(tid)
        tasks.append(TaskSpec(tid, full, int(seed), Path(out_dir) / tid))
    return tasks


def pack_groups(tasks: Sequence[TaskSpec], ensemble_size: int, dynamics_key=None) -> list[list[TaskSpec]]:
    """Chunks of at most `ensemble_size` tasks, never mixing tasks whose checkpoints are at different steps.

    With `dynamics_key` (a function of a task's context; used with shared experience), tasks with equal
    dynamics are made adjacent first (a stable sort keeps the given order among them), so that a grid of
    speed x length packs the speeds of one length together and they can share their experience.
    """
    if dynamics_key is not None:
        tasks = sorted(tasks, key=lambda t: dynamics_key(t.context))
    by_step: dict[int, list[TaskSpec]] = {}
    for t in tasks:
        by_step.setdefault(checkpoint_step(t.dir), []).append(t)
    groups = []
    for step in sorted(by_step, reverse=True):  # most advanced first: they finish soonest
        same = by_step[step]
        groups += [same[i:i + ensemble_size] for i in range(0, len(same), ensemble_size)]
    return groups


def _group_entry(family: str, tasks: list[TaskSpec], config_dict: dict, progress: bool, position: int,
                 parent_pid: int | None = None) -> list[dict]:
    """Worker entry point (a fresh process or a Ray worker)."""
    import torch

    if parent_pid is not None:
        exit_with_parent(parent_pid)
    config = TD3Config.from_dict(config_dict)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    return train_group(family, tasks, config, progress=progress, position=position)


def train_experts(family: str, contexts: Sequence[Mapping[str, float]], out_dir: str | Path,
                  config: TD3Config | None = None, ensemble_size: int | None = None, num_workers: int | None = None,
                  executor: str = "local", ray_address: str | None = None, progress: bool = True,
                  allow_extrapolation: bool = False, gate: GateConfig | None = GateConfig()) -> list[dict]:
    """Train one TD3 expert per context into `out_dir/<task_id>/`; finished experts are skipped.

    Pending tasks are packed into ensembles of `ensemble_size` (default: spread over the workers, at most
    8, or 32 on a GPU) and run by `num_workers` processes (default: one per core, at most 4 on a GPU) each
    using cores/workers threads.
    Then the quality gate (`gate`, None to skip it) judges every expert against the family's ceiling and its
    neighbours, retrains failures (hyperzero.experts.gate) and writes each verdict into the task's summary.json
    ("flagged", "gate") and all of them into `out_dir/gate.json`. Returns the summaries, in context order.
    """
    config = config or TD3Config()
    cfg = config.resolved(family)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS} (got {executor!r})")
    if ensemble_size is not None and ensemble_size < 1:
        raise ValueError(f"ensemble_size must be >= 1 (got {ensemble_size})")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be >= 1 (got {num_workers})")
    if gate is not None:
        gate.validate()
    out_dir = Path(out_dir)
    tasks = plan_tasks(family, contexts, out_dir, cfg.seed, allow_extrapolation)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = [t for t in tasks if not is_finished(t.dir)]
    done = len(tasks) - len(pending)
    if progress and done:
        print(f"experts: {done}/{len(tasks)} task(s) already finished in {out_dir}; not retrained", file=sys.stderr)
    _train_tasks(family, pending, cfg, out_dir, ensemble_size, num_workers, executor, ray_address, progress,
                 all_task_ids=[t.task_id for t in tasks])
    summaries = [read_json(t.dir / SUMMARY) for t in tasks]
    if gate is None:
        return summaries
    return _apply_gate(family, tasks, summaries, cfg, gate, out_dir, ensemble_size, num_workers, executor,
                       ray_address, progress)


def _train_tasks(family: str, pending: list[TaskSpec], cfg: TD3Config, out_dir: Path, ensemble_size: int | None,
                 num_workers: int | None, executor: str, ray_address: str | None, progress: bool,
                 all_task_ids: list[str], stage: str = "experts") -> None:
    if not pending:
        return
    # Local workers share this machine's GPU; Ray workers may be elsewhere, so there the CPU rule holds.
    on_gpu = executor == "local" and resolve_device(cfg.device).type == "cuda"
    workers, size = default_packing(len(pending), os.cpu_count() or 1, on_gpu, num_workers, ensemble_size)
    groups = pack_groups(pending, size, dynamics_key(family) if cfg.share_experience else None)
    workers = min(workers, len(groups))
    run_cfg = dataclasses.replace(cfg, torch_threads=cfg.torch_threads or default_threads(workers))
    if stage == "experts":  # a retry's config is in its own summary.json (the retry-<k> folder)
        write_run_info(out_dir, run_cfg, seeds={"expert": cfg.seed}, stage=stage, family=family,
                       executor=executor, ensemble_size=size, num_workers=workers, task_ids=all_task_ids,
                       trained_now=[t.task_id for t in pending])
    if progress:
        print(f"{stage}: training {len(pending)} task(s) as {len(groups)} ensemble(s) of <= {size} on "
              f"{workers} worker(s) x {run_cfg.torch_threads} thread(s), executor={executor}", file=sys.stderr)
    if executor == "ray":
        _run_ray(family, groups, run_cfg, ray_address, progress)
    elif workers == 1:
        for g in groups:
            train_group(family, g, run_cfg, progress=progress)
    else:
        _run_processes(family, groups, run_cfg, workers, progress)


RETRY_SEED_STRIDE = 1000  # retry k of an expert with seed s uses seed s + k * 1000


def _apply_gate(family: str, tasks: list[TaskSpec], summaries: list[dict], cfg: TD3Config, gate: GateConfig,
                out_dir: Path, ensemble_size, num_workers, executor, ray_address, progress) -> list[dict]:
    """Judge, retry failures (warm start from the nearest passing expert, new seed), keep each task's best attempt."""
    by_id = {t.task_id: t for t in tasks}
    for attempt in range(1, gate.max_retries + 1):
        verdicts = judge(family, summaries, gate)
        retry = []
        for i, (s, v) in enumerate(zip(summaries, verdicts)):
            if v.passed or len(s.get("retries", [])) >= attempt:
                continue
            t = by_id[s["task_id"]]
            source = warm_start_source(family, summaries, verdicts, i)
            warm = out_dir / source / EXPERT if source else None
            retry.append(TaskSpec(t.task_id, t.context, t.seed + attempt * RETRY_SEED_STRIDE,
                                  t.dir / f"retry-{attempt}", warm_start=warm))
        if not retry:
            break
        if progress:
            print(f"experts: quality gate: {len(retry)} expert(s) below what their task can score "
                  f"({', '.join(r.task_id for r in retry)}); retry {attempt}/{gate.max_retries} with a new seed, "
                  "warm-started from the nearest expert of the same direction that passed, if any", file=sys.stderr)
        pending = [r for r in retry if not is_finished(r.dir)]
        for warm in (True, False):  # warm-started and fresh retries differ in random_steps: separate ensembles
            group = [r for r in pending if (r.warm_start is not None) == warm]
            _train_tasks(family, group, gate.retry_config(cfg, warm), out_dir, ensemble_size, num_workers, executor,
                         ray_address, progress, all_task_ids=[r.task_id for r in retry], stage="gate-retry")
        for r in retry:
            _record_retry(by_id[r.task_id], r, attempt)
        summaries = [read_json(t.dir / SUMMARY) for t in tasks]
    verdicts = judge(family, summaries, gate)
    for t, s, v in zip(tasks, summaries, verdicts):
        below_threshold = cfg.quality_threshold is not None and s["eval_return_mean"] < cfg.quality_threshold
        s["flagged"] = bool(below_threshold or not v.passed)
        s["gate"] = v.to_dict()
        atomic_write_json(t.dir / SUMMARY, s)
    atomic_write_json(out_dir / "gate.json", {"config": dataclasses.asdict(gate),
                                              "verdicts": [v.to_dict() for v in verdicts]})
    flagged = [s for s in summaries if s["flagged"]]
    if progress and flagged:
        print(f"experts: {len(flagged)} expert(s) FLAGGED after {gate.max_retries} retr"
              f"{'y' if gate.max_retries == 1 else 'ies'}: " + "; ".join(
                  f"{s['task_id']} ({s['gate']['reason']})" for s in flagged), file=sys.stderr)
    return summaries


def _record_retry(task: TaskSpec, retry: TaskSpec, attempt: int) -> None:
    """Note retry `attempt` in the task's summary.json; promote its expert when it scores higher."""
    summary = read_json(task.dir / SUMMARY)
    retries = summary.setdefault("retries", [])
    if len(retries) >= attempt:
        return  # recorded by an earlier, interrupted run
    result = read_json(retry.dir / SUMMARY)
    retries.append({"attempt": attempt, "dir": retry.dir.name, "seed": retry.seed,
                    "warm_start": str(retry.warm_start) if retry.warm_start else None,
                    "eval_return_mean": result["eval_return_mean"]})
    if result["eval_return_mean"] > summary["eval_return_mean"]:
        first = {k: summary[k] for k in ("seed", "eval_return_mean", "eval_return_std", "eval_returns", "floor_return")
                 if k in summary}
        summary.setdefault("first_attempt", first)
        atomic_copy(retry.dir / EXPERT, task.dir / EXPERT)
        for k in ("seed", "eval_return_mean", "eval_return_std", "eval_returns", "floor_return", "warm_start",
                  "train_steps"):
            summary[k] = result.get(k)
        summary["promoted_from"] = retry.dir.name
    atomic_write_json(task.dir / SUMMARY, summary)


def _run_processes(family: str, groups, cfg: TD3Config, workers: int, progress: bool) -> None:
    import multiprocessing as mp

    # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_group_entry, family, g, cfg.to_dict(), progress, i % workers, os.getpid())
                   for i, g in enumerate(groups)]
        for f in futures:
            f.result()  # re-raises a worker's exception here


# ----------------------------------------------------------------------------- Ray
def _run_ray(family: str, groups, cfg: TD3Config, address: str | None, progress: bool) -> None:
    import ray

    started = start_ray(address)
    try:
        remote = ray.remote(num_cpus=cfg.torch_threads, max_retries=0)(_group_entry)
        refs = [remote.remote(family, g, cfg.to_dict(), False, 0) for g in groups]
        from tqdm import tqdm

        with tqdm(total=len(refs), desc="ensembles (ray)", disable=not progress, unit="ensemble") as bar:
            remaining = list(refs)
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1)
                for summaries in ray.get(ready):
                    bar.update(1)
                    bar.set_postfix_str(" ".join(f"{s['task_id']}:{s['eval_return_mean']:.0f}" for s in summaries))
    finally:
        if started:
            ray.shutdown()
