"""`hyperzero run`: experts -> dataset -> fits (methods x split seeds) -> evaluation -> report.

Every stage first checks its outputs and is skipped when they are complete AND valid; output that
exists but cannot be trusted (an expert summary without a loadable expert.pt, a dataset that fails
`load_dataset` validation, a fit with done.json whose model does not load) is moved aside into
`<run>/corrupt/` and redone. Unfinished work is resumed by the stage itself (expert checkpoints,
per-task dataset files, fit checkpoints, per-fit evaluation rows), so rerunning the same command
after a crash or a kill continues where it stopped.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hyperzero.launchers.config import (config_differences, dump_yaml, fit_config, incompatible, invalidated_stages,
                                        load_config_source, resolve_config, resolve_contexts)
from hyperzero.utils.io import atomic_write_json, atomic_write_text, read_json
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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir / bucket / f"{path.relative_to(run_dir).as_posix().replace('/', '__')}-{stamp}"
    n = 1
    while target.exists():
        target = target.with_name(f"{target.name}.{n}")
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))
    _say(f"{path.relative_to(run_dir)}: {reason}; moved to {target.relative_to(run_dir)} and redoing it")
    return target


# ------------------------------------------------------------------------------------------ config / run dir
def prepare_run_dir(source: str, out_dir: str | Path | None, overrides: Sequence[str] = (), force: bool = False
                    ) -> tuple[Path, dict]:
    """Resolve the config, create or check the run directory, write `config.yaml`."""
    raw, where = load_config_source(source)
    config = resolve_config(raw, overrides)
    run_dir = Path(out_dir) if out_dir else Path("runs") / (config.get("name") or Path(source).stem)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        import yaml

        try:
            old = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError:
            old = None
        if old is None:
            _move_aside(run_dir, config_path, "unreadable config.yaml")
        else:
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
    atomic_write_text(config_path, f"# resolved from {where}\n" + dump_yaml(config))
    return run_dir, config


# ------------------------------------------------------------------------------------------ experts
def expert_problem(task_dir: Path) -> str | None:
    """Why a finished-looking expert cannot be trusted, or None if it is fine (or simply unfinished)."""
    summary_path = task_dir / "summary.json"
    if not summary_path.exists():
        return None  # unfinished: train_experts resumes it
    try:
        summary = read_json(summary_path)
    except (OSError, ValueError) as e:
        return f"unreadable summary.json ({e})"
    if not summary.get("finished"):
        return None
    if not (task_dir / "expert.pt").exists():
        return "summary.json says finished but expert.pt is missing"
    try:
        from hyperzero.experts import load_expert

        load_expert(task_dir)
    except Exception as e:  # noqa: BLE001 - any load failure means the file cannot be trusted
        return f"expert.pt does not load ({type(e).__name__}: {e})"
    return None


def run_experts_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.envs import context_id
    from hyperzero.experts import TD3Config, train_experts
    from hyperzero.experts.policy import load_expert  # noqa: F401 - fail early if the stage is missing

    family = config["family"]
    contexts = resolve_contexts(family, config["contexts"])
    experts_dir = run_dir / "experts"
    for ctx in contexts:
        task_dir = experts_dir / context_id(ctx)
        problem = expert_problem(task_dir) if task_dir.exists() else None
        if problem:
            _move_aside(run_dir, task_dir, problem)
    finished = [c for c in contexts if _expert_finished(experts_dir / context_id(c))]
    if len(finished) == len(contexts):
        _say(f"experts: all {len(contexts)} experts finished and valid; skipped")
        return
    section = dict(config["experts"])
    ensemble_size, num_workers = section.pop("ensemble_size", None), section.pop("num_workers", None)
    if runtime.device:
        section["device"] = runtime.device
    _say(f"experts: {len(finished)}/{len(contexts)} finished; training the rest")
    train_experts(family, contexts, experts_dir, TD3Config(**section), ensemble_size=ensemble_size,
                  num_workers=num_workers, executor=runtime.executor, ray_address=runtime.address,
                  progress=runtime.progress)
    bad = [context_id(c) for c in contexts if not _expert_finished(experts_dir / context_id(c))]
    if bad:
        raise RuntimeError(f"experts {bad} did not finish; rerun the same command to resume")


def _expert_finished(task_dir: Path) -> bool:
    return (task_dir / "summary.json").exists() and expert_problem(task_dir) is None and \
        bool(read_json(task_dir / "summary.json").get("finished"))


# ------------------------------------------------------------------------------------------ dataset
def dataset_problem(dataset_dir: Path, expected_ids: set[str], n_episodes: int) -> tuple[str | None, bool]:
    """(problem, resumable). problem None: complete and valid."""
    from hyperzero.datasets import load_dataset

    if not (dataset_dir / "manifest.json").exists():
        return "missing", True
    try:
        dataset = load_dataset(dataset_dir)
    except ValueError as e:
        try:
            load_dataset(dataset_dir, allow_unfinalized=True)
        except ValueError:
            return f"fails validation ({e})", False
        return "unfinished collection", True
    excluded = {e["task_id"] if isinstance(e, dict) else e for e in dataset.manifest.get("excluded_tasks", [])}
    have = set(dataset.task_ids)
    if have | excluded != expected_ids:
        return (f"holds tasks {sorted(have | excluded)} but the config's tasks are {sorted(expected_ids)}"), False
    if any(t.n_episodes != n_episodes for t in dataset.tasks):
        return f"episodes per task differ from dataset.n_episodes={n_episodes}", False
    return None, True


def run_dataset_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.datasets import collect_dataset
    from hyperzero.envs import context_id

    dataset_dir = run_dir / "dataset"
    expected = {context_id(c) for c in resolve_contexts(config["family"], config["contexts"])}
    settings = config["dataset"]
    problem, resumable = dataset_problem(dataset_dir, expected, int(settings["n_episodes"]))
    if problem is None:
        _say(f"dataset: complete and valid ({len(expected)} tasks); skipped")
        return
    if not resumable:
        _move_aside(run_dir, dataset_dir, f"dataset {problem}")
    _say(f"dataset: collecting ({problem})")
    collect_dataset(run_dir / "experts", dataset_dir, n_episodes=int(settings["n_episodes"]),
                    seed=int(settings["seed"]), exclude_flagged=bool(settings.get("exclude_flagged", False)),
                    progress=runtime.progress)
    problem, _ = dataset_problem(dataset_dir, expected, int(settings["n_episodes"]))
    if problem:
        raise RuntimeError(f"{dataset_dir}: the collected dataset {problem}")


# ------------------------------------------------------------------------------------------ fits
def fit_problem(fit_dir: Path) -> str | None:
    """None when the fit is complete (done.json) and its model loads."""
    if not (fit_dir / "done.json").exists():
        return "unfinished"
    try:
        from hyperzero.training import load_fit

        load_fit(fit_dir)
    except Exception as e:  # noqa: BLE001
        return f"done.json present but the fit does not load ({type(e).__name__}: {e})"
    return None


def fit_one(run_dir: str, method: str, seed: int, fit_section: dict, device: str | None, progress: bool = True) -> str:
    """Fit one (method, split seed) into `<run>/fits/<method>/seed_<k>/`. Runs in-process or as a Ray task."""
    from hyperzero.datasets import load_dataset
    from hyperzero.training import fit

    out_dir = Path(run_dir) / "fits" / method / f"seed_{seed}"
    cfg = fit_config(fit_section, method, seed, device)
    fit(load_dataset(Path(run_dir) / "dataset"), out_dir, cfg, progress=progress)
    return str(out_dir)


def run_fits_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from tqdm.auto import tqdm

    fit_section = config["fit"]
    jobs = [(m, int(s)) for m in fit_section["methods"] for s in fit_section["seeds"]]
    todo = []
    for method, seed in jobs:
        fit_dir = run_dir / "fits" / method / f"seed_{seed}"
        problem = fit_problem(fit_dir)
        if problem is None:
            continue
        if problem != "unfinished":
            _move_aside(run_dir, fit_dir, problem)
        todo.append((method, seed))
    if not todo:
        _say(f"fits: all {len(jobs)} fits complete and valid; skipped")
        return
    _say(f"fits: {len(jobs) - len(todo)}/{len(jobs)} complete; fitting {len(todo)} (executor={runtime.executor})")
    if runtime.executor == "ray":
        _run_fits_ray(run_dir, todo, fit_section, runtime)
    else:
        bar = tqdm(todo, desc="fits", unit="fit", disable=not runtime.progress)
        for method, seed in bar:
            bar.set_postfix_str(f"{method} seed {seed}")
            fit_one(str(run_dir), method, seed, fit_section, runtime.device, runtime.progress)
    bad = [f"{m}/seed_{s}" for m, s in jobs if fit_problem(run_dir / "fits" / m / f"seed_{s}") is not None]
    if bad:
        raise RuntimeError(f"fits {bad} did not complete; rerun the same command to resume")


def _run_fits_ray(run_dir: Path, todo: list[tuple[str, int]], fit_section: dict, runtime: Runtime) -> None:
    import ray
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        ray.init(address=runtime.address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(fit_one)
    pending = [remote.remote(str(run_dir), m, s, fit_section, runtime.device, False) for m, s in todo]
    with tqdm(total=len(pending), desc="fits (ray)", unit="fit", disable=not runtime.progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
            bar.update(len(done))


# ------------------------------------------------------------------------------------------ evaluation / report
def eval_config(config: dict):
    from hyperzero.evaluation import EvalConfig

    section = dict(config.get("evaluate") or {})
    section["methods"] = list(config["fit"]["methods"])
    section["seeds"] = [int(s) for s in config["fit"]["seeds"]]
    return EvalConfig(**section)


def eval_is_current(run_dir: Path, config: dict) -> bool:
    """True when eval/done.json matches the current fits and evaluation settings, and results.csv reads."""
    from hyperzero.evaluation.evaluate import find_fits
    from hyperzero.evaluation.metrics import read_results

    done = run_dir / "eval" / "done.json"
    if not done.exists():
        return False
    try:
        record = read_json(done)
        read_results(run_dir / "eval" / "results.csv")
    except (OSError, ValueError):
        return False
    cfg = eval_config(config)
    fits = {f"{f.method}/seed_{f.seed}": f.fingerprint for f in find_fits(run_dir, cfg.methods, cfg.seeds)}
    saved = record.get("config", {})
    current = {k: v for k, v in _eval_settings(cfg).items()}
    return record.get("key", {}).get("fits") == fits and {k: saved.get(k) for k in current} == current


def _eval_settings(cfg) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(cfg)
    out["few_shot_k"] = list(cfg.few_shot_k)
    return out


def run_eval_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation import evaluate

    if eval_is_current(run_dir, config):
        _say("evaluate: results are current; skipped")
        return
    _say("evaluate: rolling out every fit on its held-out tasks")
    evaluate(run_dir, eval_config(config), progress=runtime.progress)


def run_report_stage(run_dir: Path, config: dict, runtime: Runtime) -> None:
    from hyperzero.evaluation.report import write_report

    md, page = write_report(run_dir)
    _say(f"report: {md} and {page}")


STAGE_FUNCTIONS: dict[str, Callable[[Path, dict, Runtime], None]] = {
    "experts": run_experts_stage, "dataset": run_dataset_stage, "fits": run_fits_stage,
    "eval": run_eval_stage, "report": run_report_stage,
}


def run_pipeline(source: str, out_dir: str | Path | None = None, overrides: Sequence[str] = (), force: bool = False,
                 runtime: Runtime | None = None, stop_after: str | None = None) -> Path:
    """Run (or resume) every stage of `source` (a preset name or YAML file) in `out_dir`. Returns the run dir."""
    runtime = runtime or Runtime()
    if runtime.executor not in ("local", "ray"):
        raise ValueError(f"--executor must be local or ray (got {runtime.executor!r})")
    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES} (got {stop_after!r})")
    run_dir, config = prepare_run_dir(source, out_dir, overrides, force)
    write_run_info(run_dir, config, seeds={"experts": config["experts"].get("seed"),
                                           "dataset": config["dataset"]["seed"], "fit": config["fit"]["seeds"]},
                   stage="pipeline", source=source, overrides=list(overrides),
                   runtime={"executor": runtime.executor, "address": runtime.address, "device": runtime.device})
    t0 = time.time()
    timings_path = run_dir / "stage_times.json"
    try:
        history = read_json(timings_path) if timings_path.exists() else []
    except (OSError, ValueError):
        history = []
    invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": {}}
    history.append(invocation)
    for i, stage in enumerate(STAGES, start=1):
        _say(f"stage {i}/{len(STAGES)}: {stage}")
        start = time.time()
        if stage == "report":  # the report shows this invocation's timings, so record them first
            invocation["seconds"]["total"] = round(time.time() - t0, 1)
            atomic_write_json(timings_path, history)
        STAGE_FUNCTIONS[stage](run_dir, config, runtime)
        invocation["seconds"][stage] = round(time.time() - start, 1)
        atomic_write_json(timings_path, history)
        _say(f"stage {stage} done in {time.time() - start:.1f} s")
        if stage == stop_after:
            break
    invocation["seconds"]["total"] = round(time.time() - t0, 1)
    atomic_write_json(timings_path, history)
    _say(f"finished in {time.time() - t0:.1f} s: {run_dir}")
    return run_dir
