"""When an expert's folder can be trusted, resumed, or must be redone (docs/reliability.md).

A finished expert needs an intact summary.json and an expert.pt that loads; an unfinished one an intact
checkpoint.pt (a damaged one restarts the task from scratch). Used by `hyperzero run` and `experts train`.
"""
from __future__ import annotations

from pathlib import Path

from hyperzero.utils.integrity import CorruptFileError, damaged_files, recorded_checksums_or_none, verify
from hyperzero.utils.io import load_torch, read_json
from hyperzero.utils.outputs import RESUME_STATE, OutputCheck, adopt, rel, set_aside

__all__ = ["EXPERT_TRUSTED", "RESUME_STATE", "check_expert", "check_packing", "expert_check", "summary_finished"]

EXPERT_TRUSTED = ("summary.json", "expert.pt")  # what a finished expert is used through


def summary_finished(task_dir: Path) -> bool | str:
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


def expert_check(task_dir: Path) -> OutputCheck:
    """ok (finished and valid), missing, unfinished (resumable), or damaged (the whole task is redone).

    Damaged files that a finished expert does not need (its last checkpoint, the gate's retry-<k>/ attempts) do not
    make it damaged here: `check_expert` moves them aside.
    """
    if not task_dir.exists():
        return OutputCheck("missing")
    damaged = dict(damaged_files(task_dir))
    finished = summary_finished(task_dir)
    if isinstance(finished, str):
        return OutputCheck("damaged", finished)
    if finished:  # only its own top-level files matter (not resume state, nor the gate's retry-<k>/ attempts)
        bad = {p: r for p, r in damaged.items() if p.name not in RESUME_STATE and p.parent == task_dir}
        if bad:
            return OutputCheck("damaged", "; ".join(f"{rel(task_dir, p)}: {r}" for p, r in bad.items()))
        if not (task_dir / "expert.pt").exists():
            return OutputCheck("damaged", "summary.json says finished but expert.pt is missing")
        try:
            from hyperzero.experts import load_expert

            load_expert(task_dir)
        except Exception as e:  # noqa: BLE001 - any load failure means the file cannot be trusted
            return OutputCheck("damaged", f"expert.pt does not load ({type(e).__name__}: {e})")
        return OutputCheck("ok")
    if damaged:
        return OutputCheck("damaged", "; ".join(f"{rel(task_dir, p)}: {r}" for p, r in damaged.items())
                           + " (the unfinished expert restarts from scratch)")
    checkpoint = task_dir / "checkpoint.pt"
    if checkpoint.exists() and recorded_checksums_or_none(checkpoint) is None:
        try:  # written before checksums existed: at least it must load
            load_torch(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (CorruptFileError, OSError) as e:
            return OutputCheck("damaged", f"checkpoint.pt does not load ({e}); the unfinished expert restarts from "
                                          "scratch")
    return OutputCheck("unfinished")


def check_expert(run_dir: Path, task_dir: Path) -> bool:
    """Move aside what cannot be trusted in one expert's folder. True when the expert is finished and valid."""
    check = expert_check(task_dir)
    if check.bucket:
        check.set_aside(run_dir, task_dir)
    if not check.ok:
        return False
    for path, reason in damaged_files(task_dir):  # only resume state and old attempts are left (not needed)
        set_aside(run_dir, path, f"{reason} (not needed: the expert is finished)")
    for name in EXPERT_TRUSTED:
        adopt(task_dir / name)
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
        set_aside(run_dir, path, f"{e.reason}; the packing is reconstructed if an expert has to be redone")
