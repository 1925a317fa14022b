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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hyperzero.launchers.config import (check_memory, config_differences, dump_yaml, expert_settings, fit_config,
                                        incompatible, invalidated_stages, load_config_source, resolve_config,
                                        resolve_contexts)
from hyperzero.utils.integrity import (CorruptFileError, checksum_path, damaged_files, fingerprint, move_aside,
                                       read_verified_bytes, record_checksum, recorded_checksums_or_none,
                                       remove_temp_files, sha256_file, verify)
from hyperzero.utils.io import atomic_write_json, atomic_write_text, ensure_directory, load_torch, read_json
from hyperzero.utils.lock import run_dir_lock
from hyperzero.utils.runinfo import write_run_info

STAGES = ("experts", "dataset", "fits", "eval", "report")


@dataclass
class Runtime:
    executor: str = "local"        # local | ray
    address: str | None = None     # Ray cluster address (executor=ray); None starts a local Ray
    device: str | None = None      # overrides experts.device and fit.device (auto | cpu | cuda)
    progress: bool = True


def _say(message: str) -> None:
    print(f"[hyperzero run] {message}", file=sys.stderr, flush=True)


def _move_aside(run_dir: Path, path: Path, reason: str, bucket: str = "corrupt") -> Path:
    target = move_aside(run_dir, path, bucket)
    _say(f"{_rel(run_dir, path)}: {reason}; moved to {_rel(run_dir, target)}")
    return target


def _rel(run_dir: Path, path: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return str(path)


def _adopt(path: Path) -> None:
    """Record a checksum for a file written before checksums existed, once it passed its structural check."""
    if path.is_file() and recorded_checksums_or_none(path) is None and not checksum_path(path).exists():
        record_checksum(path)


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
            _adopt(config_path)
            return old
        except (CorruptFileError, UnicodeDecodeError, yaml.YAMLError) as e:
            reason = e.reason if isinstance(e, CorruptFileError) else f"not readable YAML ({type(e).__name__})"
            _move_aside(run_dir, config_path, reason)
    info_path = run_dir / "run_info.json"
    if info_path.exists():
        try:
            old = read_json(info_path).get("config")
            if isinstance(old, dict) and old:
                _say("using the config recorded in run_info.json to check this run's outputs")
                return old
        except (CorruptFileError, AttributeError):
            _move_aside(run_dir, info_path, "damaged")
    if (run_dir / "experts").exists():
        _say("the previous config of this run is unknown (config.yaml and run_info.json are missing or damaged); "
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
                    _move_aside(run_dir, path, f"config changed ({', '.join(blocking[:3])})", bucket="stale")
        elif diffs:
            _say(f"config changes that only add work or redo evaluation: {', '.join(diffs)}")
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


# ------------------------------------------------------------------------------------------ experts
EXPERT_TRUSTED = ("summary.json", "expert.pt")  # what a finished expert is used through
RESUME_STATE = ("checkpoint.pt", "best.pt")     # only needed while a unit is unfinished


def _summary_finished(task_dir: Path) -> bool | str:
    """True/False from summary.json, or the reason it cannot be read."""
    path = task_dir / "summary.json"
    if not path.exists():
        return False
    try:
        summary = read_json(path)
    except (OSError, ValueError) as e:
        return f"summary.json unreadable ({getattr(e, 'reason', e)})"
    if not isinstance(summary, dict):
        return "summary.json is not a JSON object"
    return bool(summary.get("finished"))


def expert_problem(task_dir: Path) -> str | None:
    """Why an expert's folder cannot be trusted as it is (the whole task is redone), or None.

    A finished expert needs intact summary.json and expert.pt (that loads); an unfinished one needs an
    intact checkpoint.pt (a damaged one restarts the task from scratch). Damaged files that a finished
    expert does not need (its last checkpoint) are not a problem here: `check_expert` moves them aside.
    """
    if not task_dir.exists():
        return None
    damaged = dict(damaged_files(task_dir))
    finished = _summary_finished(task_dir)
    if isinstance(finished, str):
        return finished
    if finished:  # only its own top-level files matter (not resume state, nor the gate's retry-<k>/ attempts)
        bad = {p: r for p, r in damaged.items() if p.name not in RESUME_STATE and p.parent == task_dir}
        if bad:
            return "; ".join(f"{_rel(task_dir, p)}: {r}" for p, r in bad.items())
        if not (task_dir / "expert.pt").exists():
            return "summary.json says finished but expert.pt is missing"
        try:
            from hyperzero.experts import load_expert

            load_expert(task_dir)
        except Exception as e:  # noqa: BLE001 - any load failure means the file cannot be trusted
            return f"expert.pt does not load ({type(e).__name__}: {e})"
        return None
    if damaged:
        return "; ".join(f"{_rel(task_dir, p)}: {r}" for p, r in damaged.items()) + \
            " (the unfinished expert restarts from scratch)"
    checkpoint = task_dir / "checkpoint.pt"
    if checkpoint.exists() and recorded_checksums_or_none(checkpoint) is None:
        try:  # written before checksums existed: at least it must load
            load_torch(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (CorruptFileError, OSError) as e:
            return f"checkpoint.pt does not load ({e}); the unfinished expert restarts from scratch"
    return None


def check_expert(run_dir: Path, task_dir: Path) -> bool:
    """Move aside what cannot be trusted in one expert's folder. True when the expert is finished and valid."""
    problem = expert_problem(task_dir)
    if problem:
        _move_aside(run_dir, task_dir, problem)
        return False
    if _summary_finished(task_dir) is not True:
        return False
    for path, reason in damaged_files(task_dir):  # only resume state and old attempts are left (not needed)
        _move_aside(run_dir, path, f"{reason} (not needed: the expert is finished)")
    for name in EXPERT_TRUSTED:
        _adopt(task_dir / name)
    return True


def check_packing(run_dir: Path) -> None:
    """Move aside a damaged `experts/packing.json` (which tasks were trained together): it is reconstructed from
    the experts' folders when an expert is redone (docs/reliability.md §8)."""
    path = run_dir / "experts" / "packing.json"
    if not path.exists():
        return
    try:
        verify(path)
        read_json(path)
    except CorruptFileError as e:
        _move_aside(run_dir, path, f"{e.reason}; the packing is reconstructed if an expert has to be redone")


def run_experts_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.envs import context_id
    from hyperzero.experts import train_experts

    family = config["family"]
    contexts = resolve_contexts(family, config["contexts"])
    experts_dir = run_dir / "experts"
    check_packing(run_dir)
    finished = [c for c in contexts if check_expert(run_dir, experts_dir / context_id(c))]
    td3, gate, ensemble_size, num_workers = expert_settings(config["experts"])
    if len(finished) == len(contexts) and (gate is None or (experts_dir / "gate.json").exists()):
        shutil.rmtree(experts_dir / ".shadow", ignore_errors=True)  # a redo killed just before its cleanup
        _say(f"experts: all {len(contexts)} experts finished and valid; skipped")
        return
    if runtime.device:
        td3 = dataclasses.replace(td3, device=runtime.device)
    _say(f"experts: {len(finished)}/{len(contexts)} finished; training the rest")
    train_experts(family, contexts, experts_dir, td3, ensemble_size=ensemble_size, num_workers=num_workers,
                  executor=runtime.executor, ray_address=runtime.address, progress=runtime.progress, gate=gate)
    bad = [context_id(c) for c in contexts if expert_problem(experts_dir / context_id(c)) is not None
           or _summary_finished(experts_dir / context_id(c)) is not True]
    if bad:
        raise RuntimeError(f"experts {bad} did not finish; rerun the same command to resume")


# ------------------------------------------------------------------------------------------ dataset
def dataset_problem(dataset_dir: Path, expected_ids: set[str], n_episodes: int,
                    experts_dir: Path | None = None, run_dir: Path | None = None) -> tuple[str | None, bool]:
    """(problem, resumable); problem None: complete, valid and made from the current experts.

    With `run_dir`, task files that fail their checksum, or whose expert was retrained since they were
    collected (`experts_dir`), are moved aside so that the collection redoes only those tasks.
    """
    from hyperzero.datasets import load_dataset
    from hyperzero.datasets.format import DatasetError, read_manifest

    if not (dataset_dir / "manifest.json").exists():
        return "missing", True
    try:
        manifest = read_manifest(dataset_dir)
    except DatasetError as e:
        return f"fails validation ({e})", False
    entries = manifest["tasks"]
    excluded = {e["task_id"] if isinstance(e, dict) else e for e in manifest.get("excluded_tasks", [])}
    have = {e["task_id"] for e in entries}
    if not have <= expected_ids or not excluded <= expected_ids:
        return (f"holds tasks {sorted(have | excluded)} but the config's tasks are {sorted(expected_ids)}"), False
    if any(e["n_episodes"] != n_episodes for e in entries):
        return f"episodes per task differ from dataset.n_episodes={n_episodes}", False
    redo = []
    for entry in entries:
        path = dataset_dir / entry["file"]
        if not path.is_file():
            redo.append(entry["task_id"])
            continue
        if sha256_file(path) != entry["sha256"]:
            if run_dir is None:
                return f"task file {entry['file']} does not match the manifest's sha256", False
            _move_aside(run_dir, path, "does not match the sha256 in manifest.json; recollecting only this task")
            redo.append(entry["task_id"])
            continue
        recorded = (entry.get("expert") or {}).get("sha256")
        expert_file = experts_dir / entry["task_id"] / "expert.pt" if experts_dir is not None else None
        if recorded and expert_file is not None and expert_file.exists() and fingerprint(expert_file) != recorded:
            if run_dir is None:
                return f"task {entry['task_id']} was collected from an expert that has since been retrained", False
            _move_aside(run_dir, path, "collected from an expert that has since been retrained; recollecting it",
                        bucket="stale")
            redo.append(entry["task_id"])
    if redo:
        return f"{len(redo)} task(s) to (re)collect: {', '.join(sorted(redo))}", True
    if have | excluded != expected_ids or not manifest.get("finalized", False):
        return "unfinished collection", True
    try:
        load_dataset(dataset_dir)
    except DatasetError as e:
        return f"fails validation ({e})", False
    _adopt(dataset_dir / "manifest.json")
    return None, True


def run_dataset_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.datasets import collect_dataset
    from hyperzero.envs import context_id

    dataset_dir = run_dir / "dataset"
    experts_dir = run_dir / "experts"
    expected = {context_id(c) for c in resolve_contexts(config["family"], config["contexts"])}
    settings = config["dataset"]
    problem, resumable = dataset_problem(dataset_dir, expected, int(settings["n_episodes"]), experts_dir, run_dir)
    if problem is None:
        _say(f"dataset: complete and valid ({len(expected)} tasks); skipped")
        return
    if not resumable:
        _move_aside(run_dir, dataset_dir, f"dataset {problem}")
    _say(f"dataset: collecting ({problem})")
    collect_dataset(experts_dir, dataset_dir, n_episodes=int(settings["n_episodes"]),
                    seed=int(settings["seed"]), exclude_flagged=bool(settings.get("exclude_flagged", False)),
                    action_noise=float(settings.get("action_noise", 0.0)), progress=runtime.progress)
    problem, _ = dataset_problem(dataset_dir, expected, int(settings["n_episodes"]), experts_dir)
    if problem:
        raise RuntimeError(f"{dataset_dir}: the collected dataset {problem}")
    excluded = read_json(dataset_dir / "manifest.json").get("excluded_tasks", [])
    if excluded:
        _say(f"dataset: left out {len(excluded)} task(s) whose expert failed the quality gate: "
             f"{', '.join(e['task_id'] if isinstance(e, dict) else str(e) for e in excluded)} "
             "(experts/gate.json says why; dataset.exclude_flagged=false keeps them)")


def dataset_task_checksums(dataset_dir: Path) -> dict[str, str]:
    """task_id -> sha256 of its task file, from the (verified) manifest."""
    from hyperzero.datasets.format import read_manifest

    return {e["task_id"]: e["sha256"] for e in read_manifest(dataset_dir)["tasks"]}


# ------------------------------------------------------------------------------------------ fits
FIT_INPUTS = "inputs.json"  # what a fit was trained from: the dataset's family and each task file's sha256


def record_fit_inputs(fit_dir: Path, dataset) -> None:
    """Write `<fit>/inputs.json` before a fit starts (its dataset's family, names and task checksums)."""
    atomic_write_json(fit_dir / FIT_INPUTS, {
        "family": dataset.family, "context_names": list(dataset.context_names),
        "dataset": str(getattr(dataset, "directory", "")),
        "tasks": {e["task_id"]: e["sha256"] for e in dataset.manifest.get("tasks", [])}})


def fit_inputs_problem(fit_dir: Path, family: str, context_names: Sequence[str], tasks: dict[str, str]) -> str | None:
    """Why a fit directory does not belong to this dataset (family, features, or changed task files), or None.

    Only the fit's train and validation tasks matter (from split.json); its test tasks never reached it.
    """
    inputs_path = fit_dir / FIT_INPUTS
    if inputs_path.exists():
        recorded = read_json(inputs_path)
    elif (fit_dir / "run_info.json").exists():  # a fit made before inputs.json existed: family and features only
        info = read_json(fit_dir / "run_info.json")
        recorded = {"family": info.get("family"), "context_names": info.get("context_names"), "tasks": None}
    else:
        return None
    if recorded.get("family") not in (None, family) or (
            recorded.get("context_names") is not None and list(recorded["context_names"]) != list(context_names)):
        return (f"was fitted on a {recorded.get('family')} dataset with features {recorded.get('context_names')}, "
                f"not this {family} dataset with {list(context_names)}")
    old = recorded.get("tasks")
    if old is None:
        return None
    used = set(old)
    if (fit_dir / "split.json").exists():
        split = read_json(fit_dir / "split.json")
        used = set(split.get("train", [])) | set(split.get("val", []))
    changed = sorted(t for t in used if old.get(t) != tasks.get(t))
    if changed:
        return f"was trained on dataset tasks that have changed since ({', '.join(changed)})"
    return None


def fit_problem(fit_dir: Path, dataset_tasks: dict[str, str] | None = None, family: str | None = None,
                context_names: Sequence[str] | None = None) -> str | None:
    """None when the fit is complete, intact, loads, and was trained on the current dataset; "unfinished" when it
    has not finished but can resume; otherwise why it must be redone from scratch."""
    damaged = dict(damaged_files(fit_dir)) if fit_dir.exists() else {}
    done = (fit_dir / "done.json").exists()
    if done:
        bad = {p: r for p, r in damaged.items() if p.name not in RESUME_STATE}
    else:
        bad = damaged
    if bad:
        return "; ".join(f"{_rel(fit_dir, p)}: {r}" for p, r in bad.items()) + \
            ("" if done else " (the unfinished fit restarts from scratch)")
    if dataset_tasks is not None and family is not None:
        try:
            stale = fit_inputs_problem(fit_dir, family, context_names or [], dataset_tasks)
        except CorruptFileError as e:
            return str(e)
        if stale:
            return stale
    if not done:
        return "unfinished"
    try:
        read_json(fit_dir / "done.json")
        from hyperzero.training import load_fit

        load_fit(fit_dir)
    except Exception as e:  # noqa: BLE001
        return f"done.json present but the fit does not load ({type(e).__name__}: {e})"
    return None


def check_fit(run_dir: Path, fit_dir: Path, dataset_tasks: dict[str, str], family: str,
              context_names: Sequence[str]) -> bool:
    """Move aside what cannot be trusted in one fit directory. True when the fit is complete and valid."""
    if not fit_dir.exists():
        return False
    problem = fit_problem(fit_dir, dataset_tasks, family, context_names)
    if problem == "unfinished":
        return False
    if problem:
        bucket = "stale" if "changed since" in problem or "was fitted on" in problem else "corrupt"
        _move_aside(run_dir, fit_dir, problem, bucket=bucket)
        return False
    for path, reason in damaged_files(fit_dir):
        _move_aside(run_dir, path, f"{reason} (not needed: the fit is finished)")
    for name in ("done.json", "model.pt", "split.json", "run_info.json"):
        _adopt(fit_dir / name)
    return True


def fit_one(run_dir: str, method: str, seed: int, fit_section: dict, device: str | None, progress: bool = True) -> str:
    """Fit one (method, split seed) into `<run>/fits/<method>/seed_<k>/`. Runs in-process or as a Ray task."""
    from hyperzero.datasets import load_dataset
    from hyperzero.training import fit

    out_dir = Path(run_dir) / "fits" / method / f"seed_{seed}"
    cfg = fit_config(fit_section, method, seed, device)
    dataset = load_dataset(Path(run_dir) / "dataset")
    record_fit_inputs(out_dir, dataset)
    fit(dataset, out_dir, cfg, progress=progress)
    return str(out_dir)


def run_fits_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.datasets.format import read_manifest

    fit_section = config["fit"]
    manifest = read_manifest(run_dir / "dataset")
    tasks = {e["task_id"]: e["sha256"] for e in manifest["tasks"]}
    inputs = (tasks, manifest["family"], manifest["context_names"])
    jobs = [(m, int(s)) for m in fit_section["methods"] for s in fit_section["seeds"]]
    check_enough_tasks(run_dir, fit_section, manifest)
    todo = [(m, s) for m, s in jobs if not check_fit(run_dir, run_dir / "fits" / m / f"seed_{s}", *inputs)]
    if not todo:
        _say(f"fits: all {len(jobs)} fits complete and valid; skipped")
        return
    _say(f"fits: {len(jobs) - len(todo)}/{len(jobs)} complete; fitting {len(todo)} (executor={runtime.executor})")
    if runtime.executor == "ray":
        _run_fits_ray(run_dir, todo, fit_section, runtime)
    else:
        _run_fits_local(run_dir, todo, fit_section, runtime)
    bad = [f"{m}/seed_{s}" for m, s in jobs if fit_problem(run_dir / "fits" / m / f"seed_{s}", *inputs) is not None]
    if bad:
        raise RuntimeError(f"fits {bad} did not complete; rerun the same command to resume")


def check_enough_tasks(run_dir: Path, fit_section: dict, manifest: dict) -> None:
    """Refuse, before any fit starts, a dataset too small for the split protocol (e.g. after the quality gate
    left tasks out), naming the cause and the fixes instead of failing inside the first fit."""
    from hyperzero.datasets.splits import make_split

    task_ids = [e["task_id"] for e in manifest["tasks"]]
    needs = [what for what, used in (("lr_sweep", bool(fit_section.get("lr_sweep"))),
                                     (f"selection={fit_section.get('selection')}",
                                      fit_section.get("selection") in ("return", "val_loss"))) if used]
    if not needs:  # selection=auto falls back to the last checkpoint without validation tasks
        return
    cfg = fit_config(fit_section, fit_section["methods"][0], int(fit_section["seeds"][0]))
    short = []
    for seed in fit_section["seeds"]:
        split = make_split(task_ids, int(seed), cfg.protocol, cfg.val_fraction, cfg.test_fraction, cfg.min_test_tasks)
        if not split.val:
            short.append((int(seed), split))
    if not short:
        return
    seed, split = short[0]
    excluded = [e["task_id"] if isinstance(e, dict) else str(e) for e in manifest.get("excluded_tasks", [])]
    why = (f"; the quality gate left out {len(excluded)} task(s) ({', '.join(excluded)}; {run_dir / 'experts' / 'gate.json'} "
           "says why)" if excluded else "")
    raise ValueError(
        f"the dataset has {len(task_ids)} usable task(s){why}: split seed {seed} gets {len(split.train)} train, "
        f"{len(split.val)} validation and {len(split.test)} test task(s), but {' and '.join(needs)} need(s) validation "
        "tasks. Fix: give the "
        "experts more steps (experts.train_steps, experts.gate.retry_steps) or more tasks, or keep flagged experts "
        "with dataset.exclude_flagged=false (they are then never scored), then rerun")


def local_fit_workers(fit_section: Mapping, n_fits: int) -> int:
    """Processes the local executor fits with: fit.num_workers, or one per core; never more than the fits."""
    return max(1, min(fit_section.get("num_workers") or os.cpu_count() or 1, n_fits))


def _fit_entry(run_dir: str, method: str, seed: int, fit_section: dict, device: str | None, parent_pid: int) -> str:
    """Worker entry point of a local fit process."""
    from hyperzero.utils.workers import exit_with_parent

    exit_with_parent(parent_pid)
    return fit_one(run_dir, method, seed, fit_section, device, progress=False)


def _run_fits_local(run_dir: Path, todo: list[tuple[str, int]], fit_section: dict, runtime: Runtime) -> None:
    """Fits on this machine. By default one process per core, each with its share of the cores' threads: a fit's
    small batches keep one core busy better than two (on 2 cores, two one-thread fits at a time finished the
    quickstart's fit stage 1.6x sooner than one two-thread fit after another; docs/pipeline.md).
    `fit.num_workers: 1` fits one at a time in this process, with fit.num_threads threads (0 = torch's default)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from hyperzero.utils.ray_local import RESUME_HINT, WorkerDiedError

    from tqdm.auto import tqdm

    from hyperzero.utils.workers import default_threads

    workers = local_fit_workers(fit_section, len(todo))
    if workers == 1:
        bar = tqdm(todo, desc="fits", unit="fit", disable=not runtime.progress)
        for method, seed in bar:
            bar.set_postfix_str(f"{method} seed {seed}")
            fit_one(str(run_dir), method, seed, fit_section, runtime.device, runtime.progress)
        return
    section = {**fit_section, "num_threads": fit_section.get("num_threads") or default_threads(workers)}
    _say(f"fits: {workers} processes x {section['num_threads']} thread(s)")
    # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool, \
            tqdm(total=len(todo), desc="fits", unit="fit", disable=not runtime.progress) as bar:
        futures = {pool.submit(_fit_entry, str(run_dir), m, s, section, runtime.device, os.getpid()): (m, s)
                   for m, s in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:  # fits already running finish (or checkpoint); queued ones do not start
                        other.cancel()
                    if isinstance(future.exception(), BrokenProcessPool):
                        method, seed = futures[future]
                        raise WorkerDiedError(f"a worker process died while fitting {method} seed {seed} (killed, "
                                              f"or out of memory?); {RESUME_HINT}") from None
                    raise future.exception()
                method, seed = futures[future]
                bar.update(1)
                bar.set_postfix_str(f"{method} seed {seed} done")


def _run_fits_ray(run_dir: Path, todo: list[tuple[str, int]], fit_section: dict, runtime: Runtime) -> None:
    """One Ray task per (method, split seed) fit, one CPU each. `run_dir` must be on storage every node sees
    (as for the expert stage); a fit that dies is redone by rerunning the same command."""
    import ray
    from tqdm.auto import tqdm

    from hyperzero.utils.ray_local import start_ray, worker_died

    section = {**fit_section, "num_threads": fit_section.get("num_threads") or 1}  # one thread per 1-CPU task
    started = start_ray(runtime.address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(fit_one)
        refs = {remote.remote(str(run_dir), m, s, section, runtime.device, False): (m, s) for m, s in todo}
        pending = list(refs)
        with tqdm(total=len(pending), desc="fits (ray)", unit="fit", disable=not runtime.progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        ray.get(ref)  # re-raises a fit's exception here
                    except Exception as e:  # noqa: BLE001 - a lost worker is one line; a fit's own error is itself
                        died = worker_died(e, "fitting {} seed {}".format(*refs[ref]))
                        if died is None:
                            raise
                        raise died from None
                bar.update(len(done))
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------------ evaluation / report
def eval_config(config: dict):
    from hyperzero.evaluation import EvalConfig

    section = dict(config.get("evaluate") or {})
    section["methods"] = list(config["fit"]["methods"])
    section["seeds"] = [int(s) for s in config["fit"]["seeds"]]
    return EvalConfig(**section)


def check_eval(run_dir: Path) -> list[Path]:
    """Move aside damaged evaluation files (cached rows, expert returns, results, done.json, figures, videos):
    they are redone. Returns where they were."""
    eval_dir = run_dir / "eval"
    moved = []
    for path, reason in damaged_files(eval_dir):
        _move_aside(run_dir, path, f"{reason}; it is recomputed")
        moved.append(path)
    for path in sorted(eval_dir.glob("rows/*/*.json")) + sorted(eval_dir.glob("*.json")):
        try:  # written before checksums existed: it must at least parse
            read_json(path)
        except CorruptFileError as e:
            _move_aside(run_dir, path, f"{e.reason}; it is recomputed")
            moved.append(path)
    return moved


def media_problem(run_dir: Path, config: dict, moved: Sequence[Path] = ()) -> str | None:
    """Why the evaluation's figures or videos must be made again (one was damaged and moved aside, a video has no
    checksum, or videos are asked for and there are none), or None."""
    eval_dir = run_dir / "eval"
    for path in moved:
        if path.parent.name in ("videos", "figures"):
            return f"{_rel(run_dir, path)} was damaged"
    if (config.get("evaluate") or {}).get("videos"):
        videos = sorted((eval_dir / "videos").glob("*.mp4"))
        if not videos and _videos_skipped(eval_dir):
            return None  # the family cannot render: the evaluation said so, and rerunning it would not help
        if not videos:
            return "the videos are missing"
        unverified = [v for v in videos if not checksum_path(v).exists()]
        if unverified:  # written before videos had checksums: a truncated one could not be told from a good one
            return f"{_rel(run_dir, unverified[0])} has no checksum"
    return None


def _videos_skipped(eval_dir: Path) -> bool:
    try:
        return bool(read_json(eval_dir / "done.json").get("videos_skipped"))
    except (OSError, ValueError, AttributeError):
        return False


def restore_expert_returns(run_dir: Path, config: dict) -> None:
    """Recompute `eval/expert_returns.json` (the experts' and do-nothing floors' reference returns) when it is
    missing, e.g. moved aside as damaged, while every fit's rows were cached: `evaluate` rolls the references
    out only for fits it rolls out, so the file would otherwise stay missing."""
    path = run_dir / "eval" / "expert_returns.json"
    rows = sorted((run_dir / "eval" / "rows").glob("*/*.json"))
    if path.exists() or not rows:
        return
    from hyperzero.datasets import load_dataset
    from hyperzero.evaluation.evaluate import ExpertReference, _default_load_expert, reference_settings

    dataset = load_dataset(run_dir / "dataset")
    tasks = {t.task_id: t for t in dataset.tasks}
    needed = set()
    for row_file in rows:
        try:
            needed |= {r["task_id"] for r in read_json(row_file).get("rows", [])}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            continue
    seeds = eval_config(config).episode_seeds
    reference = ExpertReference(run_dir, dataset.family, _default_load_expert, path,
                                **reference_settings(dataset, eval_config(config)))
    for task_id in sorted(needed & set(tasks)):
        context = dict(tasks[task_id].context)
        try:
            reference.returns(task_id, context, seeds)
        except FileNotFoundError:
            pass  # a flagged task without an expert: its rows say so
        reference.floor_returns(task_id, context, seeds)
    _say(f"evaluate: recomputed eval/expert_returns.json ({len(needed & set(tasks))} task(s))")


def eval_is_current(run_dir: Path, config: dict) -> bool:
    """True when eval/done.json matches the current fits, dataset and evaluation settings, and results.csv is
    intact (checksum) and reads."""
    from hyperzero.evaluation.evaluate import find_fits
    from hyperzero.evaluation.metrics import read_results

    done = run_dir / "eval" / "done.json"
    results = run_dir / "eval" / "results.csv"
    if not done.exists() or not results.exists():
        return False
    try:
        record = read_json(done)
        verify(results)
        read_results(results)
    except (OSError, ValueError):
        return False
    cfg = eval_config(config)
    fits = {f"{f.method}/seed_{f.seed}": f.fingerprint for f in find_fits(run_dir, cfg.methods, cfg.seeds)}
    saved = record.get("config", {})
    current = _eval_settings(cfg)
    key = record.get("key", {})
    if "dataset" in key:
        from hyperzero.datasets.format import DatasetError, read_manifest
        from hyperzero.evaluation.evaluate import _dataset_fingerprint

        try:
            manifest = read_manifest(run_dir / "dataset")
        except DatasetError:
            return False
        if key["dataset"] != _dataset_fingerprint(type("Manifest", (), {"manifest": manifest})()):
            return False
        from hyperzero.evaluation.evaluate import references_digest

        try:  # recorded (not rolled-out) expert returns that changed since: the rows hold the old ones
            if key.get("expert_returns") != references_digest(run_dir, manifest, cfg):
                return False
        except ValueError:
            return False
    return key.get("fits") == fits and {k: saved.get(k) for k in current} == current


def _eval_settings(cfg) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(cfg)
    out["few_shot_k"] = list(cfg.few_shot_k)
    del out["num_workers"]  # how many processes roll out changes no result
    return out


def run_eval_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation import evaluate

    moved = check_eval(run_dir)
    if eval_is_current(run_dir, config):
        media = media_problem(run_dir, config, moved)
        if media is None:
            restore_expert_returns(run_dir, config)
            _say("evaluate: results are current; skipped")
            return
        _say(f"evaluate: results are current but {media}; remaking the summary, figures and videos (cached rows are "
             "reused)")
    else:
        _say("evaluate: rolling out every fit on its held-out tasks (intact cached rows of unchanged fits are reused)")
    evaluate(run_dir, eval_config(config), progress=runtime.progress)
    restore_expert_returns(run_dir, config)


def run_report_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation.report import write_report

    md, page = write_report(run_dir)
    _say(f"report: {md} and {page}")


STAGE_FUNCTIONS: dict[str, Callable[[Path, dict, Runtime], None]] = {
    "experts": run_experts_stage, "dataset": run_dataset_stage, "fits": run_fits_stage,
    "eval": run_eval_stage, "report": run_report_stage,
}


def packing_record(config: dict) -> dict[str, Any]:
    """What can change the numbers besides the config: how experts are packed and threaded, and the CPU."""
    import torch

    from hyperzero.utils.hardware import cpu_model
    from hyperzero.utils.workers import default_threads

    experts, fit = config["experts"], config["fit"]
    cores = os.cpu_count() or 1
    workers = experts.get("num_workers") or cores
    fit_workers = local_fit_workers(fit, len(fit["methods"]) * len(fit["seeds"]))
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
                raise ValueError(f"experts.precision=bf16 was asked for, but {reason}; use --set experts.precision=auto "
                                 "(picks fp32 here) or fp32")


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
            _say(f"removed {len(leftovers)} temporary file(s) left by an interrupted write "
                 f"({', '.join(_rel(run_dir, p) for p in leftovers[:3])}{' ...' if len(leftovers) > 3 else ''})")
        _check_and_write_config(run_dir, config, where, force)
        info_path = run_dir / "run_info.json"  # the previous invocation's record: replaced, but not without a word
        if info_path.exists():
            try:
                verify(info_path)
            except CorruptFileError as e:
                _move_aside(run_dir, info_path, f"{e.reason}; a new one is written")
        write_run_info(run_dir, config, seeds={"experts": config["experts"].get("seed"),
                                               "dataset": config["dataset"]["seed"], "fit": config["fit"]["seeds"]},
                       stage="pipeline", source=where if isinstance(source, Mapping) else str(source), overrides=list(overrides), packing=packing_record(config),
                       runtime={"executor": runtime.executor, "address": runtime.address, "device": runtime.device})
        _run_stages(run_dir, config, runtime, stop_after)
    return run_dir


def override_items(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Overrides as `--set` items: a mapping {"fit.seeds": [0, 1]} becomes ["fit.seeds=[0, 1]"] (YAML values)."""
    if isinstance(overrides, Mapping):
        import yaml

        from hyperzero.launchers.config import ConfigDumper, plain_config

        return [f"{key}={yaml.dump(plain_config(value), Dumper=ConfigDumper, default_flow_style=True, width=10**9).strip()}"
                .removesuffix("\n...") for key, value in overrides.items()]
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
            _move_aside(run_dir, timings_path, f"{getattr(e, 'reason', e)}; timings start afresh")
    # The load average at each stage's end says whether its wall time was shared with other work on the machine.
    invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": {}, "cpus": os.cpu_count(),
                  "load_average": {}}
    history.append(invocation)
    atomic_write_json(timings_path, history)  # a run killed in its first stage still shows it was started
    for i, stage in enumerate(STAGES, start=1):
        _say(f"stage {i}/{len(STAGES)}: {stage}")
        start = time.time()
        if stage == "report":  # the report shows this invocation's timings, so record them first
            invocation["seconds"]["total"] = round(time.time() - t0, 1)
            atomic_write_json(timings_path, history)
        STAGE_FUNCTIONS[stage](run_dir, config, runtime)
        invocation["seconds"][stage] = round(time.time() - start, 1)
        invocation["load_average"][stage] = [round(x, 2) for x in os.getloadavg()]
        atomic_write_json(timings_path, history)
        _say(f"stage {stage} done in {time.time() - start:.1f} s")
        if stage == stop_after:
            break
    invocation["seconds"]["total"] = round(time.time() - t0, 1)
    atomic_write_json(timings_path, history)
    _say(f"finished in {time.time() - t0:.1f} s: {run_dir}")
