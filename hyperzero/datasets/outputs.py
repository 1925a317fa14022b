"""When a run's dataset can be used, resumed task by task, or must be redone (docs/reliability.md)."""
from __future__ import annotations

from pathlib import Path

from hyperzero.utils.integrity import fingerprint, sha256_file
from hyperzero.utils.outputs import OutputCheck, adopt, set_aside

__all__ = ["dataset_check", "dataset_task_checksums"]


def dataset_check(dataset_dir: Path, expected_ids: set[str], n_episodes: int, experts_dir: Path | None = None,
                  run_dir: Path | None = None) -> OutputCheck:
    """ok: complete, valid and made from the current experts. missing / unfinished: the collection resumes (the
    reason names the tasks left). damaged: the whole dataset is redone (it fails validation, or holds other tasks
    or episode counts than the config's).

    With `run_dir`, task files that fail their checksum (RUN/corrupt/), or whose expert was retrained since they
    were collected (`experts_dir`; RUN/stale/), are moved aside so that the collection redoes only those tasks;
    without it such a file makes the check damaged / changed.
    """
    from hyperzero.datasets import load_dataset
    from hyperzero.datasets.format import DatasetError, read_manifest

    if not (dataset_dir / "manifest.json").exists():
        return OutputCheck("missing", "missing")
    try:
        manifest = read_manifest(dataset_dir)
    except DatasetError as e:
        return OutputCheck("damaged", f"fails validation ({e})")
    entries = manifest["tasks"]
    excluded = {e["task_id"] if isinstance(e, dict) else e for e in manifest.get("excluded_tasks", [])}
    have = {e["task_id"] for e in entries}
    if not have <= expected_ids or not excluded <= expected_ids:
        return OutputCheck("damaged", f"holds tasks {sorted(have | excluded)} but the config's tasks are "
                                      f"{sorted(expected_ids)}")
    if any(e["n_episodes"] != n_episodes for e in entries):
        return OutputCheck("damaged", f"episodes per task differ from dataset.n_episodes={n_episodes}")
    redo = []
    for entry in entries:
        path = dataset_dir / entry["file"]
        if not path.is_file():
            redo.append(entry["task_id"])
            continue
        if sha256_file(path) != entry["sha256"]:
            if run_dir is None:
                return OutputCheck("damaged", f"task file {entry['file']} does not match the manifest's sha256")
            set_aside(run_dir, path, "does not match the sha256 in manifest.json; recollecting only this task")
            redo.append(entry["task_id"])
            continue
        recorded = (entry.get("expert") or {}).get("sha256")
        expert_file = experts_dir / entry["task_id"] / "expert.pt" if experts_dir is not None else None
        if recorded and expert_file is not None and expert_file.exists() and fingerprint(expert_file) != recorded:
            if run_dir is None:
                return OutputCheck("changed", f"task {entry['task_id']} was collected from an expert that has "
                                              "since been retrained")
            set_aside(run_dir, path, "collected from an expert that has since been retrained; recollecting it",
                      bucket="stale")
            redo.append(entry["task_id"])
    if redo:
        return OutputCheck("unfinished", f"{len(redo)} task(s) to (re)collect: {', '.join(sorted(redo))}")
    if have | excluded != expected_ids or not manifest.get("finalized", False):
        return OutputCheck("unfinished", "unfinished collection")
    try:
        load_dataset(dataset_dir)
    except DatasetError as e:
        return OutputCheck("damaged", f"fails validation ({e})")
    adopt(dataset_dir / "manifest.json")
    return OutputCheck("ok")


def dataset_task_checksums(dataset_dir: Path) -> dict[str, str]:
    """task_id -> sha256 of its task file, from the (verified) manifest."""
    from hyperzero.datasets.format import read_manifest

    return {e["task_id"]: e["sha256"] for e in read_manifest(dataset_dir)["tasks"]}
