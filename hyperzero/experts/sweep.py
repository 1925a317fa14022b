"""Sweeps: many tasks -> ensembles -> worker processes (local) or Ray tasks, resumable and idempotent."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

from hyperzero.experts.chain import CHAIN, CHAIN_FORMAT, ChainConfig, plan_chain
from hyperzero.experts.config import TD3Config
from hyperzero.experts.gate import GateConfig, judge, warm_start_source
from hyperzero.experts.solvers import SolverConfig, get_solver, solver_for
from hyperzero.experts.trainer import (CHECKPOINT, EXPERT, SUMMARY, TaskSpec, ceil_div, checkpoint_step,
                                       dynamics_key, is_finished, train_group)
from hyperzero.utils.integrity import CorruptFileError, fingerprint, move_aside
from hyperzero.utils.io import atomic_copy, atomic_write_json, read_json
from hyperzero.utils.runinfo import write_run_info
from hyperzero.utils.torch_utils import resolve_device
from hyperzero.utils.workers import default_threads

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
                 fresh: bool = False, solver: str = "td3") -> list[dict]:
    """Worker entry point (a process of hyperzero.utils.workers' pool, or a Ray task)."""
    import torch

    config = get_solver(solver).config_class.from_dict(config_dict)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    return train_group(family, tasks, config, progress=progress, position=position, fresh=fresh)


def train_experts(family: str, contexts: Sequence[Mapping[str, float]], out_dir: str | Path,
                  config: SolverConfig | None = None, ensemble_size: int | None = None, num_workers: int | None = None,
                  executor: str = "local", ray_address: str | None = None, progress: bool = True,
                  allow_extrapolation: bool = False, gate: GateConfig | None = GateConfig(),
                  chain: ChainConfig | None = None) -> list[dict]:
    """Train one expert per context into `out_dir/<task_id>/`; finished experts are skipped. The config's class
    picks the solver (TD3Config: TD3, the default; SACConfig: SAC; hyperzero.experts.solvers).

    Pending tasks are packed into ensembles of `ensemble_size` (default: spread over the workers, at most
    8, or 32 on a GPU) and run by `num_workers` processes (default: one per core, at most 4 on a GPU) each
    using cores/workers threads.
    Then the quality gate (`gate`, None to skip it) judges every expert against the family's ceiling and its
    neighbours, retrains failures (hyperzero.experts.gate) and writes each verdict into the task's summary.json
    ("flagged", "gate") and all of them into `out_dir/gate.json`. Returns the summaries, in context order.

    With `chain` enabled (hyperzero.experts.chain), a few anchors per direction are trained from scratch and every
    other task, wave by wave, warm-started from its nearest finished expert for `chain.steps`; then the gate.
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
    chained = chain is not None and chain.enabled
    if chained:
        chain.validate(_episode_steps(family, cfg), cfg.seed_steps, cfg.train_steps)
    out_dir = Path(out_dir)
    tasks = plan_tasks(family, contexts, out_dir, cfg.seed, allow_extrapolation)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = [t for t in tasks if not is_finished(t.dir)]
    done = len(tasks) - len(pending)
    if progress and done:
        print(f"experts: {done}/{len(tasks)} task(s) already finished in {out_dir}; not retrained", file=sys.stderr)
    if chained:
        _train_chain(family, tasks, cfg, chain, out_dir, ensemble_size, num_workers, executor, ray_address, progress)
    else:
        _train_tasks(family, pending, cfg, out_dir, ensemble_size, num_workers, executor, ray_address, progress,
                     all_task_ids=[t.task_id for t in tasks], stage_members=tasks)
    summaries = [read_json(t.dir / SUMMARY) for t in tasks]
    shutil.rmtree(out_dir / SHADOW / "experts", ignore_errors=True)  # re-simulated members: kept only across kills
    if gate is not None:
        summaries = _apply_gate(family, tasks, summaries, cfg, gate, out_dir, ensemble_size, num_workers, executor,
                                ray_address, progress)
    shutil.rmtree(out_dir / SHADOW, ignore_errors=True)
    return summaries


PLAN = "packing.json"  # which tasks were trained together, per stage: a redo is packed the same way
SHADOW = ".shadow"     # scratch folders of finished members re-simulated beside a redone one
PLAN_FORMAT = 1


@dataclasses.dataclass
class _Run:
    """One ensemble to train now: its members in planned order, whether it starts from step 0 whatever the
    checkpoints, and the members that are only re-simulated (planned member dict, scratch folder)."""
    tasks: list[TaskSpec]
    fresh: bool
    shadows: list[tuple[dict, Path]]


def _rel(out_dir: Path, path: Path) -> str:
    try:
        return Path(path).relative_to(out_dir).as_posix()
    except ValueError:
        return str(path)


def _member(out_dir: Path, t: TaskSpec) -> dict:
    return {"dir": _rel(out_dir, t.dir), "task_id": t.task_id, "context": dict(t.context), "seed": int(t.seed),
            "warm_start": _rel(out_dir, t.warm_start) if t.warm_start else None}


def _spec(out_dir: Path, m: dict, directory: Path) -> TaskSpec:
    return TaskSpec(m["task_id"], dict(m["context"]), int(m["seed"]), directory,
                    warm_start=out_dir / m["warm_start"] if m.get("warm_start") else None)


def load_plan(out_dir: Path, progress: bool = True) -> dict | None:
    """`out_dir/packing.json`, or None when there is none (a run made before it existed, or a new one). A
    damaged one is moved to `out_dir/corrupt/` (named on stderr) and the packing is reconstructed."""
    path = Path(out_dir) / PLAN
    if not path.exists():
        return None
    try:
        plan = read_json(path)
        if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT or not isinstance(plan.get("stages"), dict):
            raise CorruptFileError(path, "is not a packing record this hyperzero knows")
        return plan
    except (CorruptFileError, OSError) as e:
        target = move_aside(out_dir, path)
        print(f"experts: {path}: {getattr(e, 'reason', e)}; moved to {target}; the packing is reconstructed",
              file=sys.stderr)
        return None


def _has_progress(task_dir: Path) -> bool:
    return (task_dir / SUMMARY).exists() or (task_dir / CHECKPOINT).exists()


def _legacy_stage_plan(family: str, members: Sequence[TaskSpec], cfg: SolverConfig, out_dir: Path, on_gpu: bool,
                       num_workers: int | None, ensemble_size: int | None) -> dict | None:
    """The packing an earlier run without packing.json used for these stage members: one pack_groups of all of
    them (every member pending, at step 0, in their order). None when nothing was trained yet, or when the
    finished members' summaries (their `ensemble_size`) contradict it."""
    if not members or not any(_has_progress(t.dir) for t in members):
        return None
    workers, size = default_packing(len(members), os.cpu_count() or 1, on_gpu, num_workers, ensemble_size)
    ordered = sorted(members, key=lambda t: dynamics_key(family)(t.context)) if cfg.share_experience else list(members)
    groups = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    for g in groups:
        for t in g:
            try:
                recorded = read_json(t.dir / SUMMARY).get("ensemble_size") if (t.dir / SUMMARY).exists() else None
            except (OSError, ValueError):
                recorded = None
            if recorded is not None and recorded != len(g):
                print(f"experts: the packing of this earlier run cannot be reconstructed ({t.task_id} was trained in an "
                      f"ensemble of {recorded}, not {len(g)}); a redone expert may differ from the one it replaces "
                      f"within float rounding (docs/reliability.md §8)", file=sys.stderr)
                return None
    threads = cfg.torch_threads or default_threads(min(workers, len(groups)))
    return {"ensemble_size": size, "torch_threads": threads, "reconstructed": True,
            "groups": [[_member(out_dir, t) for t in g] for g in groups]}


def _start_step(task_dir: Path, shadow: bool) -> int:
    """The checkpoint step a member would resume from (0 without one); -1 for a damaged shadow checkpoint."""
    try:
        return checkpoint_step(task_dir)
    except (CorruptFileError, OSError, KeyError, ValueError):
        if not shadow:
            raise
        return -1


def plan_runs(family: str, pending: list[TaskSpec], cfg: SolverConfig, out_dir: Path, ensemble_size: int | None,
              num_workers: int | None, on_gpu: bool, stage_key: str, stage_members: Sequence[TaskSpec] = (),
              progress: bool = True) -> tuple[list[_Run], dict]:
    """The ensembles to train for `pending` and the stage's packing record (written to packing.json).

    Every member of a stage is trained in the ensemble it was first packed into: a member's numbers depend
    on its ensemble (docs/reliability.md §8), so a task redone after damage is trained beside its original
    ensemble mates again, and those that are already finished are re-simulated in `out_dir/.shadow/` (their
    results are compared with the saved ones, then deleted). Members whose checkpoints are at different steps
    (a damaged one moved aside, a kill or a full disk between two members' checkpoints) restart together from
    step 0. Tasks the record does not know are packed as before (`pack_groups`) and added to it."""
    plan = load_plan(out_dir, progress) or {"format": PLAN_FORMAT, "stages": {}}
    stage = plan["stages"].get(stage_key)
    if stage is None:
        stage = _legacy_stage_plan(family, stage_members, cfg, out_dir, on_gpu, num_workers, ensemble_size)
    by_dir = {_rel(out_dir, t.dir): t for t in pending}
    if stage is not None:
        planned = {m["dir"]: m for g in stage["groups"] for m in g}
        changed = [d for d, t in by_dir.items() if d in planned and planned[d] != _member(out_dir, t)]
        if changed:
            if progress:
                print(f"experts: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}: seed, context or warm "
                      f"start differ from {PLAN}; these stage members are packed anew", file=sys.stderr)
            stage = None
    if stage is None:
        stage = {"ensemble_size": None, "torch_threads": None, "groups": []}
    planned = {m["dir"] for g in stage["groups"] for m in g}
    unplanned = [t for t in pending if _rel(out_dir, t.dir) not in planned]
    if unplanned:
        workers, size = default_packing(len(unplanned), os.cpu_count() or 1, on_gpu, num_workers, ensemble_size)
        groups = pack_groups(unplanned, size, dynamics_key(family) if cfg.share_experience else None)
        stage["groups"] += [[_member(out_dir, t) for t in g] for g in groups]
        stage["ensemble_size"] = stage["ensemble_size"] or size
        stage["torch_threads"] = stage["torch_threads"] or cfg.torch_threads or default_threads(
            min(workers, len(groups)))
    runs = []
    for group in stage["groups"]:
        if not any(m["dir"] in by_dir for m in group):
            continue
        tasks, shadows = [], []
        for m in group:
            if m["dir"] in by_dir:
                tasks.append(by_dir[m["dir"]])
            else:
                scratch = Path(out_dir) / SHADOW / stage_key / m["dir"].replace("/", "__")
                tasks.append(_spec(Path(out_dir), m, scratch))
                shadows.append((m, scratch))
        shadow_dirs = {d for _, d in shadows}
        steps = [_start_step(t.dir, t.dir in shadow_dirs) for t in tasks]
        fresh = len(set(steps)) > 1
        if fresh and progress:
            print(f"experts: ensemble {', '.join(t.task_id for t in tasks)} restarts from step 0: its members' "
                  f"checkpoints are at steps {sorted(set(steps))}, and a member is reproduced only in the ensemble "
                  f"it was first trained in", file=sys.stderr)
        runs.append(_Run(tasks, fresh, shadows))
    plan["stages"][stage_key] = stage
    return runs, plan


def _check_shadows(out_dir: Path, runs: list[_Run], progress: bool) -> None:
    """Compare each re-simulated member with its saved expert (a check that the redo reproduced the original
    computation), then delete the scratch folders."""
    same, differ = [], []
    for run in runs:
        for m, scratch in run.shadows:
            saved, redone = Path(out_dir) / m["dir"] / EXPERT, scratch / EXPERT
            if saved.exists() and redone.exists() and is_finished(Path(out_dir) / m["dir"]):
                try:
                    (same if fingerprint(saved) == fingerprint(redone) else differ).append(m["dir"])
                except OSError:
                    pass
            shutil.rmtree(scratch, ignore_errors=True)
    if same and not differ:
        print(f"experts: the {len(same)} re-simulated ensemble mate(s) reproduced their saved experts bit for bit, "
              f"so the redone task(s) were trained exactly as first", file=sys.stderr)
    if differ:
        print(f"experts: warning: re-simulated {', '.join(differ)} differ(s) from the saved expert.pt: this machine "
              f"(CPU, threads, torch) rounds differently from the one that trained them, so the redone task(s) match "
              f"the originals only within float rounding (docs/reliability.md §8)", file=sys.stderr)
    shadow_root = Path(out_dir) / SHADOW
    if shadow_root.is_dir() and not any(p.is_file() for p in shadow_root.rglob("*")):
        shutil.rmtree(shadow_root, ignore_errors=True)


def _train_tasks(family: str, pending: list[TaskSpec], cfg: SolverConfig, out_dir: Path, ensemble_size: int | None,
                 num_workers: int | None, executor: str, ray_address: str | None, progress: bool,
                 all_task_ids: list[str], stage: str = "experts", stage_key: str = "experts",
                 stage_members: Sequence[TaskSpec] = ()) -> None:
    if not pending:
        return
    # Local workers share this machine's GPU; Ray workers may be elsewhere, so there the CPU rule holds.
    on_gpu = executor == "local" and resolve_device(cfg.device).type == "cuda"
    runs, plan = plan_runs(family, pending, cfg, out_dir, ensemble_size, num_workers, on_gpu, stage_key,
                           stage_members, progress)
    record = plan["stages"][stage_key]
    workers = min(num_workers or default_packing(len(pending), os.cpu_count() or 1, on_gpu)[0], len(runs))
    threads = cfg.torch_threads or record["torch_threads"] or default_threads(workers)
    if cfg.torch_threads and record["torch_threads"] and cfg.torch_threads != record["torch_threads"] and progress:
        print(f"experts: {cfg.torch_threads} thread(s) per worker, but {stage_key} was first trained with "
              f"{record['torch_threads']}: results may differ within float rounding", file=sys.stderr)
    if ensemble_size and record["ensemble_size"] and ensemble_size != record["ensemble_size"] and progress:
        print(f"experts: ensembles of {ensemble_size} were asked for, but {stage_key} was first packed in ensembles of "
              f"{record['ensemble_size']} ({PLAN}); its tasks are trained in those, so they reproduce",
              file=sys.stderr)
    run_cfg = dataclasses.replace(cfg, torch_threads=threads)
    atomic_write_json(Path(out_dir) / PLAN, plan)  # before training: a kill now still leaves the packing known
    size = record["ensemble_size"]
    if stage == "experts":  # a retry's config is in its own summary.json (the retry-<k> folder)
        write_run_info(out_dir, run_cfg, seeds={"expert": cfg.seed}, stage=stage, family=family,
                       executor=executor, ensemble_size=size, num_workers=workers, task_ids=all_task_ids,
                       trained_now=[t.task_id for t in pending], packing=PLAN, **solver_for(cfg).tag())
    n_shadows = sum(len(r.shadows) for r in runs)
    if progress:
        print(f"{stage}: training {len(pending)} task(s) as {len(runs)} ensemble(s) of <= {size} on "
              f"{workers} worker(s) x {run_cfg.torch_threads} thread(s), executor={executor}", file=sys.stderr)
    if n_shadows:
        print(f"{stage}: also re-simulating {n_shadows} finished ensemble mate(s) in {SHADOW}/ "
              f"({', '.join(m['task_id'] for r in runs for m, _ in r.shadows)}): a task is redone in the ensemble "
              f"it was first trained in, so that it reproduces the expert it replaces", file=sys.stderr)
    if executor == "ray":
        _run_ray(family, runs, run_cfg, ray_address, progress)
    elif workers == 1:
        for r in runs:
            train_group(family, r.tasks, run_cfg, progress=progress, fresh=r.fresh)
    else:
        _run_processes(family, runs, run_cfg, workers, progress)
    if n_shadows:
        _check_shadows(out_dir, runs, progress)


def _episode_steps(family: str, cfg: SolverConfig) -> int:
    from hyperzero.envs import get_family

    return int(cfg.max_episode_steps or get_family(family).episode_steps)


def load_chain(family: str, tasks: list[TaskSpec], chain: ChainConfig, out_dir: Path) -> dict:
    """The chain of `tasks` (plan_chain), checked against `out_dir/chain.json` and written there. The plan is a
    function of the grid and the chain settings, so a damaged record is only rebuilt; a record of another grid
    or other settings is refused once any of its tasks has started, as their experts would no longer match it."""
    planned = plan_chain(family, tasks, chain)
    path = out_dir / CHAIN
    recorded = None
    if path.exists():
        try:
            recorded = read_json(path)
            if not isinstance(recorded, dict) or recorded.get("format") != CHAIN_FORMAT:
                raise CorruptFileError(path, "is not a chain record this hyperzero knows")
        except (CorruptFileError, OSError, ValueError) as e:
            target = move_aside(out_dir, path)
            print(f"experts: {path}: {getattr(e, 'reason', e)}; moved to {target}; the chain is rebuilt",
                  file=sys.stderr)
            recorded = None
    if recorded is not None and recorded != planned:
        started = [m["task_id"] for w in recorded.get("waves", []) for m in w if _has_progress(out_dir / m["task_id"])]
        if started:
            raise ValueError(f"{path} records another chain (the grid or experts.chain changed since {started[0]} "
                             f"was trained); rerun with the settings of that run, or train into a new directory")
    if recorded != planned:
        atomic_write_json(path, planned)
    return planned


def _train_chain(family: str, tasks: list[TaskSpec], cfg: SolverConfig, chain: ChainConfig, out_dir: Path,
                 ensemble_size, num_workers, executor, ray_address, progress) -> None:
    """Wave 0 (the anchors) from scratch for train_steps; wave k+1 warm-started from the final checkpoints of
    earlier waves for the chained steps, acting with the source's policy from the first step. Each wave is one
    packing stage, so a killed run resumes inside the wave it was training and a redone task reproduces."""
    plan = load_chain(family, tasks, chain, out_dir)
    steps = chain.chained_steps(cfg.train_steps, _episode_steps(family, cfg))
    chained_cfg = dataclasses.replace(cfg, train_steps=steps, random_steps=0)
    by_id = {t.task_id: t for t in tasks}
    if progress:
        print(f"experts: chain of {len(tasks)} task(s): {len(plan['anchors'])} anchor(s) from scratch "
              f"({cfg.train_steps} steps), then {len(plan['waves']) - 1} wave(s) warm-started from their nearest "
              f"finished expert ({steps} steps); {CHAIN}", file=sys.stderr)
    for k, wave in enumerate(plan["waves"]):
        members = [dataclasses.replace(by_id[m["task_id"]], warm_start=out_dir / m["source"] / CHECKPOINT)
                   if m["source"] else by_id[m["task_id"]] for m in wave]
        pending = [t for t in members if not is_finished(t.dir)]
        _train_tasks(family, pending, cfg if k == 0 else chained_cfg, out_dir, ensemble_size, num_workers, executor,
                     ray_address, progress, all_task_ids=[t.task_id for t in tasks],
                     stage="experts" if k == 0 else f"chain wave {k}", stage_key=f"chain-wave-{k}",
                     stage_members=members)
        for m, t in zip(wave, members):
            summary = read_json(t.dir / SUMMARY)
            if "chain" not in summary:
                summary["chain"] = {"wave": k, "source": m["source"], "steps": int(summary["train_steps"])}
                atomic_write_json(t.dir / SUMMARY, summary)


RETRY_SEED_STRIDE = 1000  # retry k of an expert with seed s uses seed s + k * 1000


def _apply_gate(family: str, tasks: list[TaskSpec], summaries: list[dict], cfg: SolverConfig, gate: GateConfig,
                out_dir: Path, ensemble_size, num_workers, executor, ray_address, progress) -> list[dict]:
    """Judge, retry failures (warm start from the nearest passing expert, new seed), keep each task's best attempt.

    In rounds: a retry that scores higher raises the bar of its neighbours, so a task that passed before can fail
    the next judgement; it then gets its own retries in the next round. Every failing task gets up to
    `max_retries`, and the rounds stop when no failing task has one left (bars only rise, so they end)."""
    by_id = {t.task_id: t for t in tasks}
    attempt = 0
    while True:
        attempt += 1  # the round; retry k of any task is the one trained in round k (folder retry-<k>, seed + 1000 k)
        # judged on the summaries as they were when this round was first judged: a task redone since then
        # must get the verdict (and warm start) it got the first time, not one against promoted neighbours
        seen = [_as_of(t, s, attempt) for t, s in zip(tasks, summaries)]
        verdicts = judge(family, seen, gate)
        due, retry = [], []
        for i, (s, v) in enumerate(zip(summaries, verdicts)):
            earlier = [r for r in s.get("retries", []) if r["attempt"] < attempt]
            if v.passed or len(earlier) >= gate.max_retries:
                continue
            due.append(s["task_id"])
            if any(r["attempt"] == attempt for r in s.get("retries", [])):
                continue  # recorded by an earlier, interrupted run
            t = by_id[s["task_id"]]
            source = warm_start_source(family, seen, verdicts, i)
            warm = out_dir / source / EXPERT if source else None
            retry.append(TaskSpec(t.task_id, t.context, t.seed + attempt * RETRY_SEED_STRIDE,
                                  t.dir / f"retry-{attempt}", warm_start=warm))
        if not due:
            break
        if not retry:
            continue
        if progress:
            print(f"experts: quality gate: {len(retry)} expert(s) below what their task can score "
                  f"({', '.join(r.task_id for r in retry)}); retry round {attempt} (up to {gate.max_retries} per task) "
                  "with a new seed, warm-started from the nearest expert of the same direction that passed, if any",
                  file=sys.stderr)
        pending = [r for r in retry if not is_finished(r.dir)]
        for warm in (True, False):  # warm-started and fresh retries differ in random_steps: separate ensembles
            group = [r for r in pending if (r.warm_start is not None) == warm]
            members = _retry_members(tasks, summaries, [r for r in retry if (r.warm_start is not None) == warm],
                                     attempt, warm, out_dir)
            _train_tasks(family, group, gate.retry_config(cfg, warm), out_dir, ensemble_size, num_workers, executor,
                         ray_address, progress, all_task_ids=[r.task_id for r in retry], stage="gate-retry",
                         stage_key=f"gate-retry-{attempt}-{'warm' if warm else 'fresh'}", stage_members=members)
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


_PROMOTED = ("seed", "eval_return_mean", "eval_return_std", "eval_returns", "floor_return")


def _as_of(task: TaskSpec, summary: dict, attempt: int) -> dict:
    """The task's summary as the gate saw it when it first judged `attempt`: its first attempt, with the retries
    before `attempt` promoted where they scored higher (as `_record_retry` promotes them)."""
    first = summary.get("first_attempt")
    if not first:
        return summary  # never promoted: its numbers are the first attempt's
    seen = {**summary, **first}
    for r in sorted(summary.get("retries", []), key=lambda r: r["attempt"]):
        if r["attempt"] >= attempt or not r["eval_return_mean"] > seen["eval_return_mean"]:
            continue
        try:
            result = read_json(task.dir / r["dir"] / SUMMARY)
        except (OSError, ValueError):
            result = {"eval_return_mean": r["eval_return_mean"], "seed": r.get("seed")}
        seen.update({k: result[k] for k in _PROMOTED if k in result})
    return seen


def _retry_members(tasks: list[TaskSpec], summaries: list[dict], retries: list[TaskSpec], attempt: int, warm: bool,
                   out_dir: Path) -> list[TaskSpec]:
    """Every retry of `attempt` of one kind (warm or fresh), in task order: this round's and those recorded in
    the summaries (for reconstructing the packing of a run made before packing.json existed)."""
    pending_by_id = {r.task_id: r for r in retries}
    members = []
    for t, s in zip(tasks, summaries):
        if t.task_id in pending_by_id:
            members.append(pending_by_id[t.task_id])
            continue
        for r in s.get("retries", []):
            if r.get("attempt") == attempt and (r.get("warm_start") is not None) == warm:
                source = Path(r["warm_start"]).parent.name if r.get("warm_start") else None
                members.append(TaskSpec(t.task_id, t.context, int(r["seed"]), t.dir / r["dir"],
                                        warm_start=Path(out_dir) / source / EXPERT if source else None))
    return members


def _record_retry(task: TaskSpec, retry: TaskSpec, attempt: int) -> None:
    """Note retry `attempt` in the task's summary.json; promote its expert when it scores higher."""
    summary = read_json(task.dir / SUMMARY)
    retries = summary.setdefault("retries", [])
    if any(r["attempt"] == attempt for r in retries):
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


def _ensemble_name(run: _Run) -> str:
    ids = [t.task_id for t in run.tasks]
    return f"ensemble {', '.join(ids[:4])}{' ...' if len(ids) > 4 else ''}"


def _jobs(family: str, runs: list[_Run], cfg: SolverConfig, progress: bool, workers: int) -> list[tuple]:
    """_group_entry's arguments per ensemble (`workers` spreads the local progress bars over terminal rows)."""
    return [(family, r.tasks, cfg.to_dict(), progress, i % workers, r.fresh, solver_for(cfg).name)
            for i, r in enumerate(runs)]


def _run_processes(family: str, runs: list[_Run], cfg: SolverConfig, workers: int, progress: bool) -> None:
    from hyperzero.utils.workers import run_in_processes

    run_in_processes(_group_entry, _jobs(family, runs, cfg, progress, workers), workers, threads=cfg.torch_threads,
                     describe=lambda i, job: f"training {_ensemble_name(runs[i])}")


# ----------------------------------------------------------------------------- Ray
def _run_ray(family: str, runs: list[_Run], cfg: SolverConfig, address: str | None, progress: bool) -> None:
    from tqdm import tqdm

    from hyperzero.utils.ray_local import run_on_ray

    with tqdm(total=len(runs), desc="ensembles (ray)", disable=not progress, unit="ensemble") as bar:
        def done(i: int, summaries: list[dict]) -> None:
            bar.update(1)
            bar.set_postfix_str(" ".join(f"{s['task_id']}:{s['eval_return_mean']:.0f}" for s in summaries))

        run_on_ray(_group_entry, _jobs(family, runs, cfg, False, 1), address=address, num_cpus=cfg.torch_threads,
                   describe=lambda i, job: f"training {_ensemble_name(runs[i])}", on_result=done)
