"""`DatasetWriter`: adds one task at a time, each write atomic, so an interrupted collection resumes."""
from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hyperzero.datasets.format import (FORMAT_VERSION, MANIFEST_NAME, STEP_FIELDS, TASKS_DIRNAME, DatasetError,
                                       Episodes, ExpertInfo, check_episode_arrays, discounted_return_to_go,
                                       read_manifest, sha256_file)
from hyperzero.utils.io import atomic_write_bytes, atomic_write_json
from hyperzero.utils.runinfo import versions

log = logging.getLogger(__name__)

_FLOAT_FIELDS = ("obs", "action", "reward", "next_obs", "q")
_BOOL_FIELDS = ("terminated", "truncated")


def _resolve_family(family: Any):
    from hyperzero.envs import get_family

    if isinstance(family, str):
        return family, get_family(family)
    name = getattr(family, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"family must be a family name (str) or a hyperzero.envs Family, got {type(family).__name__}")
    return name, family


def _as_float32(name: str, a: Any, where: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"{where}: {name!r} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_bool(name: str, a: Any, where: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return np.ascontiguousarray(arr.astype(np.bool_))
    raise DatasetError(f"{where}: {name!r} must be boolean (or 0/1), got dtype {arr.dtype}")


class DatasetWriter:
    """Writes `directory/manifest.json` and `directory/tasks/<task_id>.npz` (docs/dataset-format.md).

    Every `add_task` writes the task file atomically and then rewrites the manifest atomically, so
    a killed process leaves a valid dataset of the finished tasks. Opening an existing directory
    with `overwrite=False` resumes it (its family, context_names and gamma must match); tasks whose
    file is missing or fails its sha256 are dropped from the manifest so they are recollected.
    `overwrite=True` deletes the existing manifest and task files first. One writer per directory at
    a time (an advisory lock enforces it).
    """

    def __init__(self, directory: str | Path, family: Any, context_names: Sequence[str], gamma: float = 0.99,
                 overwrite: bool = False):
        self.directory = Path(directory)
        self.family_name, self.family = _resolve_family(family)
        self.context_names = list(context_names)
        self.gamma = float(gamma)
        space = self.family.context_space
        if not self.context_names:
            raise ValueError("context_names is empty: name the context features that vary across tasks "
                             f"(features of {self.family_name}: {list(space.names)})")
        unknown = [n for n in self.context_names if n not in space.names]
        if unknown or len(set(self.context_names)) != len(self.context_names):
            raise ValueError(f"context_names {self.context_names} must be distinct features of {self.family_name} "
                             f"(features: {list(space.names)}; unknown: {unknown})")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.tasks_dir = self.directory / TASKS_DIRNAME
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._acquire_lock()
        for tmp in self.tasks_dir.glob(".*.tmp"):  # leftovers of a write killed mid-way
            tmp.unlink(missing_ok=True)
        self.manifest = self._open(overwrite)
        self._write_manifest()

    # ------------------------------------------------------------------------------------------------------------
    def _acquire_lock(self):
        import fcntl

        f = open(self.directory / ".writer.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DatasetError(f"{self.directory}: another process is writing this dataset; wait for it to finish "
                               f"or write to another directory") from None
        return f

    def close(self) -> None:
        """Release the directory lock (finalize() does it too). The dataset stays resumable."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fresh_manifest(self) -> dict:
        bounds = [[float(lo), float(hi)] for lo, hi in self.family.context_space.bounds(self.context_names)]
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return {
            "format_version": FORMAT_VERSION,
            "family": self.family_name,
            "context_names": self.context_names,
            "context_bounds": bounds,
            "obs_dim": int(self.family.obs_dim),
            "act_dim": int(self.family.act_dim),
            "gamma": self.gamma,
            "finalized": False,
            "created": now,
            "updated": now,
            "versions": versions(),
            "collection": {},
            "excluded_tasks": [],
            "tasks": [],
        }

    def _open(self, overwrite: bool) -> dict:
        mpath = self.directory / MANIFEST_NAME
        if overwrite:
            mpath.unlink(missing_ok=True)
            for f in self.tasks_dir.glob("*.npz"):
                f.unlink()
            return self._fresh_manifest()
        if not mpath.exists():
            return self._fresh_manifest()
        try:
            old = read_manifest(self.directory)
        except DatasetError as e:
            raise DatasetError(f"{e}\n(to start this dataset afresh, delete {self.directory} or pass overwrite=True)") from e
        want = {"family": self.family_name, "context_names": self.context_names, "gamma": self.gamma,
                "obs_dim": int(self.family.obs_dim), "act_dim": int(self.family.act_dim)}
        for key, value in want.items():
            if old[key] != value:
                raise DatasetError(f"{mpath}: existing dataset has {key}={old[key]!r}, this writer has {value!r}; "
                                   f"write to another directory, or pass overwrite=True to replace it")
        kept = []
        for entry in old["tasks"]:
            f = self.directory / entry["file"]
            if f.is_file() and sha256_file(f) == entry["sha256"]:
                kept.append(entry)
            else:
                log.warning("%s: task file missing or modified; task %s will be recollected", f, entry["task_id"])
        if len(kept) < len(old["tasks"]):
            old["finalized"] = False
        old["tasks"] = kept
        old["versions"] = versions()
        old.setdefault("collection", {})
        old.setdefault("excluded_tasks", [])
        return old

    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.manifest["n_tasks"] = len(self.manifest["tasks"])
        atomic_write_json(self.directory / MANIFEST_NAME, self.manifest)

    # ------------------------------------------------------------------------------------------------------------
    @property
    def task_ids(self) -> list[str]:
        return [e["task_id"] for e in self.manifest["tasks"]]

    def entry(self, task_id: str) -> dict | None:
        for e in self.manifest["tasks"]:
            if e["task_id"] == task_id:
                return e
        return None

    def _fixed_context(self) -> dict[str, float] | None:
        """The features outside context_names as the dataset's tasks have them (None before the first task)."""
        if not self.manifest["tasks"]:
            return None
        return {k: v for k, v in self.manifest["tasks"][0]["context"].items() if k not in self.context_names}

    def has_task(self, task_id: str) -> bool:
        """True when the task is in the manifest (its file was verified when the writer opened)."""
        return self.entry(task_id) is not None

    def set_collection_info(self, **info: Any) -> None:
        """Record how the data were produced (e.g. seed, n_episodes, experts_dir) under manifest['collection']."""
        self.manifest["collection"].update(info)
        self._write_manifest()

    def record_excluded(self, task_id: str, context: Mapping[str, float], reason: str) -> None:
        """List a task that was deliberately left out (e.g. a flagged expert) in manifest['excluded_tasks']."""
        kept = [e for e in self.manifest["excluded_tasks"] if e["task_id"] != task_id]
        kept.append({"task_id": task_id, "context": dict(context), "reason": reason})
        self.manifest["excluded_tasks"] = kept
        self._write_manifest()

    def add_task(self, context: Mapping[str, float], episodes: Episodes | Mapping[str, Any],
                 expert_info: Mapping[str, Any] | ExpertInfo | None = None) -> dict:
        """Validate and store one task; returns its manifest entry.

        `context` must give every feature of `context_names` (none is defaulted); the family's other
        features are fixed for the whole dataset: at the values the first task gave (family defaults
        for those it left out), and a later task may leave them out or repeat them, not change them.
        Values are checked by the family's ContextSpace (outside the nominal bounds but inside the
        physical limits is accepted; |speed| must be at least MIN_ABS_SPEED). Two tasks may not
        share one context vector over `context_names`. `episodes` is an `Episodes` or a dict with
        the same keys; float arrays are cast to float32, 0/1 arrays to bool; within an episode
        next_obs[t] must equal obs[t+1] exactly. `q` may be omitted (stored as NaN). `return_to_go`
        is always recomputed here.
        """
        from hyperzero.envs.context import context_id

        given = dict(context) if isinstance(context, Mapping) else context
        fixed = self._fixed_context()
        if fixed is None and isinstance(given, dict):  # the first task sets the values of the fixed features
            fixed = {k: v for k, v in given.items() if k not in self.context_names}
        ctx = self.family.context_space.validate_for(given, self.context_names, fixed, allow_extrapolation=True,
                                                     who=f"this dataset ({self.directory})")
        ctx = {k: float(v) for k, v in ctx.items()}
        task_id = context_id(ctx)
        where = f"task {task_id!r} of {self.directory}"
        if self.has_task(task_id):
            raise DatasetError(f"{where}: task is already in the dataset; check writer.has_task() first, or use "
                               f"overwrite=True for a fresh dataset")
        vector = np.asarray(self.family.context_space.to_vector(ctx, self.context_names), dtype=np.float32)
        for e in self.manifest["tasks"]:
            if np.array_equal(np.asarray(e["context_vector"], dtype=np.float32), vector):
                raise DatasetError(
                    f"{where}: its context vector {dict(zip(self.context_names, vector.tolist()))} over context_names "
                    f"{self.context_names} is the same as task {e['task_id']!r}'s; a model sees only those features, "
                    f"so the two tasks would be one input with two behaviours. Give the tasks different values of "
                    f"{self.context_names}, or write to a dataset whose context_names include the feature they "
                    f"differ in")
        if isinstance(episodes, Mapping):
            try:
                episodes = Episodes.from_dict(episodes)
            except ValueError as e:
                raise DatasetError(f"{where}: {e}") from e
        if not isinstance(episodes, Episodes):
            raise TypeError(f"episodes must be an Episodes or a dict of arrays, got {type(episodes).__name__}")
        arrays: dict[str, np.ndarray] = {}
        for name in _FLOAT_FIELDS:
            value = getattr(episodes, name)
            if value is None:  # q: the producer has no critic
                value = np.full(np.shape(episodes.reward), np.nan, dtype=np.float32)
            arrays[name] = _as_float32(name, value, where)
        for name in _BOOL_FIELDS:
            arrays[name] = _as_bool(name, getattr(episodes, name), where)
        seeds = np.asarray(episodes.episode_seed)
        if seeds.dtype.kind not in "iu" or (seeds < 0).any():
            raise DatasetError(f"{where}: 'episode_seed' must be non-negative integers, got {seeds.dtype} {seeds[:5]}")
        arrays["episode_seed"] = seeds.astype(np.int64)
        if arrays["reward"].ndim == 2:
            arrays["return_to_go"] = discounted_return_to_go(arrays["reward"], self.gamma).astype(np.float32)
        else:
            arrays["return_to_go"] = np.zeros_like(arrays["reward"])  # shape error reported just below
        E, T = check_episode_arrays(arrays, int(self.family.obs_dim), int(self.family.act_dim), where)
        if len(np.unique(arrays["episode_seed"])) != E:
            raise DatasetError(f"{where}: episode seeds repeat ({arrays['episode_seed'].tolist()}); use distinct "
                               f"seeds so that episodes are distinct")
        arrays["context_vector"] = vector
        arrays["family"] = np.array(self.family_name)
        arrays["task_id"] = np.array(task_id)

        buf = io.BytesIO()
        np.savez(buf, **{k: arrays[k] for k in (*STEP_FIELDS, "episode_seed", "context_vector", "family", "task_id")})
        data = buf.getvalue()
        rel = f"{TASKS_DIRNAME}/{task_id}.npz"
        atomic_write_bytes(self.directory / rel, data)

        info = expert_info if isinstance(expert_info, ExpertInfo) else ExpertInfo.from_dict(expert_info)
        returns = arrays["reward"].astype(np.float64).sum(axis=1)
        entry = {
            "task_id": task_id,
            "file": rel,
            "context": ctx,
            "context_vector": [float(v) for v in vector],
            "n_episodes": E,
            "episode_length": T,
            "episode_seeds": [int(s) for s in arrays["episode_seed"]],
            "episode_return_mean": float(returns.mean()),
            "episode_return_std": float(returns.std()),
            "has_q": bool(np.isfinite(arrays["q"]).all()),
            "expert": info.to_dict(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self.manifest["tasks"].append(entry)
        self.manifest["excluded_tasks"] = [e for e in self.manifest["excluded_tasks"] if e["task_id"] != task_id]
        self.manifest["finalized"] = False
        self._write_manifest()
        return entry

    def finalize(self) -> Path:
        """Mark the dataset complete (load_dataset refuses unfinalized ones) and release the lock."""
        if not self.manifest["tasks"]:
            raise DatasetError(f"{self.directory}: cannot finalize a dataset with no tasks")
        lengths = {e["episode_length"] for e in self.manifest["tasks"]}
        if len(lengths) > 1:
            log.warning("%s: tasks have different episode lengths %s", self.directory, sorted(lengths))
        self.manifest["finalized"] = True
        self._write_manifest()
        self.close()
        return self.directory / MANIFEST_NAME
