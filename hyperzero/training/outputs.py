"""When a fit directory can be trusted, resumed, or must be redone, and whether a dataset can be split for the
fits at all (docs/reliability.md). Used by `hyperzero run` and `hyperzero fit`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hyperzero.utils.integrity import CorruptFileError, damaged_files
from hyperzero.utils.io import atomic_write_json, read_json
from hyperzero.utils.outputs import RESUME_STATE, OutputCheck, adopt, rel, set_aside

__all__ = ["FIT_INPUTS", "FIT_TRUSTED", "check_enough_tasks", "check_fit", "fit_check", "fit_inputs_check",
           "record_fit_inputs"]

FIT_INPUTS = "inputs.json"  # what a fit was trained from: the dataset's family and each task file's sha256
FIT_TRUSTED = ("done.json", "model.pt", "split.json", "run_info.json")  # what a finished fit is used through


def record_fit_inputs(fit_dir: Path, dataset) -> None:
    """Write `<fit>/inputs.json` before a fit starts (its dataset's family, names and task checksums)."""
    atomic_write_json(fit_dir / FIT_INPUTS, {
        "family": dataset.family, "context_names": list(dataset.context_names),
        "dataset": str(getattr(dataset, "directory", "")),
        "tasks": {e["task_id"]: e["sha256"] for e in dataset.manifest.get("tasks", [])}})


def fit_inputs_check(fit_dir: Path, family: str, context_names: Sequence[str], tasks: dict[str, str]) -> OutputCheck:
    """Whether a fit directory belongs to this dataset: changed (another family or features, or task files that
    changed since), damaged (its record of inputs cannot be read), else ok (also when nothing is recorded yet).

    Only the fit's train and validation tasks matter (from split.json); its test tasks never reached it.
    """
    try:
        problem = _fit_inputs_problem(fit_dir, family, context_names, tasks)
    except CorruptFileError as e:
        return OutputCheck("damaged", str(e))
    return OutputCheck("changed", problem) if problem else OutputCheck("ok")


def _fit_inputs_problem(fit_dir: Path, family: str, context_names: Sequence[str], tasks: dict[str, str]) -> str | None:
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


def fit_check(fit_dir: Path, dataset_tasks: dict[str, str] | None = None, family: str | None = None,
              context_names: Sequence[str] | None = None) -> OutputCheck:
    """ok: complete, intact, loads, and trained on the current dataset (when `dataset_tasks` and `family` are
    given). unfinished: resumes from its checkpoint. changed: trained on another dataset or on task files that
    changed since. damaged: a file fails its checksum or the fit does not load. missing: no directory."""
    if not fit_dir.exists():
        return OutputCheck("missing")
    damaged = dict(damaged_files(fit_dir))
    done = (fit_dir / "done.json").exists()
    bad = {p: r for p, r in damaged.items() if p.name not in RESUME_STATE} if done else damaged
    if bad:
        return OutputCheck("damaged", "; ".join(f"{rel(fit_dir, p)}: {r}" for p, r in bad.items())
                           + ("" if done else " (the unfinished fit restarts from scratch)"))
    if dataset_tasks is not None and family is not None:
        inputs = fit_inputs_check(fit_dir, family, context_names or [], dataset_tasks)
        if not inputs.ok:
            return inputs
    if not done:
        return OutputCheck("unfinished")
    try:
        read_json(fit_dir / "done.json")
        from hyperzero.training import load_fit

        load_fit(fit_dir)
    except Exception as e:  # noqa: BLE001
        return OutputCheck("damaged", f"done.json present but the fit does not load ({type(e).__name__}: {e})")
    return OutputCheck("ok")


def check_fit(run_dir: Path, fit_dir: Path, dataset_tasks: dict[str, str], family: str,
              context_names: Sequence[str]) -> bool:
    """Move aside what cannot be trusted in one fit directory. True when the fit is complete and valid."""
    check = fit_check(fit_dir, dataset_tasks, family, context_names)
    if check.bucket:
        check.set_aside(run_dir, fit_dir)
    if not check.ok:
        return False
    for path, reason in damaged_files(fit_dir):
        set_aside(run_dir, path, f"{reason} (not needed: the fit is finished)")
    for name in FIT_TRUSTED:
        adopt(fit_dir / name)
    return True


def check_enough_tasks(run_dir: Path, configs: Sequence, manifest: dict) -> None:
    """Refuse, before any fit starts, a dataset too small for the split protocol (e.g. after the quality gate
    left tasks out), naming the cause and the fixes instead of failing inside the first fit.

    `configs`: the FitConfig of each split seed (the split and what needs validation tasks do not depend on the
    method)."""
    from hyperzero.datasets.splits import make_split

    if not configs:
        return
    first = configs[0]
    task_ids = [e["task_id"] for e in manifest["tasks"]]
    needs = [what for what, used in (("lr_sweep", bool(first.lr_sweep)),
                                     (f"selection={first.selection}", first.selection in ("return", "val_loss")))
             if used]
    if not needs:  # selection=auto falls back to the last checkpoint without validation tasks
        return
    short = []
    for cfg in configs:
        split = make_split(task_ids, int(cfg.seed), first.protocol, first.val_fraction, first.test_fraction,
                           first.min_test_tasks)
        if not split.val:
            short.append((int(cfg.seed), split))
    if not short:
        return
    seed, split = short[0]
    excluded = [e["task_id"] if isinstance(e, dict) else str(e) for e in manifest.get("excluded_tasks", [])]
    why = (f"; the quality gate left out {len(excluded)} task(s) ({', '.join(excluded)}; "
           f"{run_dir / 'experts' / 'gate.json'} says why)" if excluded else "")
    raise ValueError(
        f"the dataset has {len(task_ids)} usable task(s){why}: split seed {seed} gets {len(split.train)} train, "
        f"{len(split.val)} validation and {len(split.test)} test task(s), but {' and '.join(needs)} need(s) validation "
        "tasks. Fix: give the "
        "experts more steps (experts.train_steps, experts.gate.retry_steps) or more tasks, or keep flagged experts "
        "with dataset.exclude_flagged=false (they are then never scored), then rerun")
