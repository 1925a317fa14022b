"""The rollout-dataset format (docs/dataset-format.md) and its validating loader.

A dataset directory holds `manifest.json` and one `tasks/<task_id>.npz` per task. Every fact about
a task (its context, its expert, its seeds) is stored in the manifest and in the task file; nothing
is ever parsed back from a path (the original code regex-parsed directory names; docs/original-code.md).
Task files are plain `.npz` archives readable with `numpy.load(path, allow_pickle=False)`.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from hyperzero.utils.typed import refuse_unknown_keys

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS_DIRNAME = "tasks"

# Per-step arrays of a task file: name -> (trailing shape symbol, dtype). E episodes x T steps first.
STEP_FIELDS: dict[str, tuple[str | None, type]] = {
    "obs": ("S", np.float32),           # s_t, the observation the action was chosen from
    "action": ("A", np.float32),        # a*_t = expert(s_t), in [-1, 1]
    "reward": (None, np.float32),       # r_{t+1} received after a*_t
    "next_obs": ("S", np.float32),      # s_{t+1}
    "terminated": (None, np.bool_),     # true end of the MDP at t+1 (never a time limit)
    "truncated": (None, np.bool_),      # episode cut at t+1 by the time limit (bootstrap through it)
    "q": (None, np.float32),            # Q1(s_t, a*_t) of the expert's online critic; NaN if none
    "return_to_go": (None, np.float32),  # sum_{k>=t} gamma^(k-t) r_{k+1}, truncated at the episode end
}
# Per-task arrays of a task file.
TASK_FIELDS: dict[str, type] = {
    "episode_seed": np.int64,           # [E] env reset seed of each episode
    "context_vector": np.float32,       # [d] the varied context features, in context_names order
    "family": np.str_,                  # [] family name (self-description; checked against the manifest)
    "task_id": np.str_,                 # [] task id (self-description; checked against the manifest)
}


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or inconsistent. The message names the file and the fix."""


@dataclass
class ExpertInfo:
    """Who produced a task's actions. Fields the producer does not know are None."""

    source: str = "user"                  # "hyperzero-td3" for our experts, "user" (or a library name) otherwise
    return_mean: float | None = None      # the expert's own evaluation return (not the dataset episodes')
    return_std: float | None = None       # std of that evaluation return
    train_steps: int | None = None        # env steps the expert was trained for
    seed: int | None = None               # the expert's training seed
    flagged: bool = False                 # the expert failed a quality check (e.g. far below its peers)
    sha256: str | None = None             # checksum of the expert file the actions came from (a retrained
                                          # expert has another one, so its task is recollected)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ExpertInfo":
        if d is None:
            return cls()
        refuse_unknown_keys(d, {f.name for f in fields(cls)}, noun="expert_info keys")
        out = cls(**dict(d))
        out.flagged = bool(out.flagged)
        for name in ("return_mean", "return_std"):
            v = getattr(out, name)
            setattr(out, name, None if v is None else float(v))
        for name in ("train_steps", "seed"):
            v = getattr(out, name)
            setattr(out, name, None if v is None else int(v))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Episodes:
    """E whole episodes of T steps each, as produced by `record_episodes` or by any RL library.

    Row e of every array is one episode, from reset to its end: only the last step of a row may be
    terminated or truncated, and it must be one of them.
    """

    obs: np.ndarray          # [E, T, S] float32
    action: np.ndarray       # [E, T, A] float32 in [-1, 1]
    reward: np.ndarray       # [E, T] float32
    next_obs: np.ndarray     # [E, T, S] float32
    terminated: np.ndarray   # [E, T] bool
    truncated: np.ndarray    # [E, T] bool
    episode_seed: np.ndarray  # [E] int64 env reset seeds
    q: np.ndarray | None = None  # [E, T] float32 Q1(s, a*) of the producer's critic; None -> all NaN

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Episodes":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"return_to_go"})
        if unknown:
            raise ValueError(f"unknown episode arrays {unknown}; expected {sorted(known)}")
        missing = sorted(k for k in known - {"q"} if k not in d)
        if missing:
            raise ValueError(f"episode arrays missing {missing}")
        return cls(**{k: d[k] for k in known if k in d})

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode, [E] float64."""
        return np.asarray(self.reward, dtype=np.float64).sum(axis=1)


def discounted_return_to_go(reward: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_{t+1} + gamma * G_{t+1} along the last axis, with G = 0 after the last stored step.

    The sum is TRUNCATED at the episode end: no bootstrap value is added after a time-limit
    truncation, so near the end of an episode G_t under-estimates the infinite-horizon value. It is a
    diagnostic (e.g. compare with q), not a training target. Accumulated in float64.
    """
    r = np.asarray(reward, dtype=np.float64)
    out = np.empty_like(r)
    running = np.zeros(r.shape[:-1], dtype=np.float64)
    for t in range(r.shape[-1] - 1, -1, -1):
        running = r[..., t] + gamma * running
        out[..., t] = running
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TaskData:
    """One task of a loaded dataset: its context, its expert, and its E x T transitions."""

    task_id: str                  # context_id(context); a name only, never parsed
    context: dict[str, float]     # the full context dict (every feature of the family)
    context_vector: np.ndarray    # [d] float32, the features in dataset.context_names order
    expert: ExpertInfo            # who produced the actions
    episode_seed: np.ndarray      # [E] int64
    obs: np.ndarray               # [E, T, S] float32
    action: np.ndarray            # [E, T, A] float32
    reward: np.ndarray            # [E, T] float32
    next_obs: np.ndarray          # [E, T, S] float32
    terminated: np.ndarray        # [E, T] bool
    truncated: np.ndarray         # [E, T] bool
    q: np.ndarray                 # [E, T] float32 (NaN when the producer had no critic)
    return_to_go: np.ndarray      # [E, T] float32, truncated at the episode end
    file: Path | None = None      # where it was loaded from

    @property
    def n_episodes(self) -> int:
        return int(self.obs.shape[0])

    @property
    def episode_length(self) -> int:
        return int(self.obs.shape[1])

    @property
    def has_q(self) -> bool:
        return bool(np.isfinite(self.q).all())

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each stored episode, [E] float64."""
        return self.reward.astype(np.float64).sum(axis=1)

    def transitions(self) -> dict[str, np.ndarray]:
        """The per-step arrays flattened to [E*T, ...] (episode-major)."""
        n = self.n_episodes * self.episode_length
        return {k: getattr(self, k).reshape(n, *getattr(self, k).shape[2:]) for k in STEP_FIELDS}


@dataclass
class RolloutDataset:
    """A loaded, validated dataset. `tasks` keeps manifest order."""

    directory: Path               # the dataset directory
    family: str                   # environment family name, e.g. "cheetah-run"
    context_names: list[str]      # the varied context features forming each task's context_vector
    gamma: float                  # discount used for return_to_go (and the experts' discount)
    obs_dim: int                  # S
    act_dim: int                  # A
    tasks: list[TaskData]         # every task, in manifest order
    manifest: dict = field(default_factory=dict, repr=False)  # the raw manifest

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]

    @property
    def has_q(self) -> bool:
        """True when every task stores a finite expert Q for every step."""
        return all(t.has_q for t in self.tasks)

    def require_q(self, who: str = "this method") -> None:
        """Raise DatasetError if some task has no expert Q (NaN), for methods that fit q."""
        bad = [t.task_id for t in self.tasks if not t.has_q]
        if bad:
            raise DatasetError(
                f"{self.directory / MANIFEST_NAME}: {who} needs the expert's Q-values, but tasks {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''} store NaN q (the producer had no critic). Use a method without "
                f"Q (e.g. hyperzero_without_q or mlp_policy) or rebuild the dataset with a q_fn.")

    def task(self, task_id: str) -> TaskData:
        for t in self.tasks:
            if t.task_id == task_id:
                return t
        raise KeyError(f"task {task_id!r} is not in {self.directory}; known tasks: {self.task_ids}")

    def subset(self, task_ids: Iterable[str]) -> "RolloutDataset":
        """A dataset with only `task_ids` (kept in the order given). Unknown ids raise KeyError."""
        ids = list(task_ids)
        unknown = sorted(set(ids) - set(self.task_ids))
        if unknown:
            raise KeyError(f"tasks {unknown} are not in the dataset at {self.directory}")
        by_id = {t.task_id: t for t in self.tasks}
        return RolloutDataset(self.directory, self.family, list(self.context_names), self.gamma, self.obs_dim,
                              self.act_dim, [by_id[i] for i in ids], self.manifest)

    def context_matrix(self) -> np.ndarray:
        """[n_tasks, d] float32 context vectors in task order."""
        return np.stack([t.context_vector for t in self.tasks]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.tasks)


# ----------------------------------------------------------------------------------------------------------------
# validation shared by the writer and the loader


def check_episode_arrays(arrays: Mapping[str, np.ndarray], obs_dim: int, act_dim: int, where: str) -> tuple[int, int]:
    """Check shapes, dtypes, finiteness and episode boundaries. Returns (E, T). Raises DatasetError."""
    for name in STEP_FIELDS:
        if name not in arrays:
            raise DatasetError(f"{where}: array {name!r} is missing")
    obs = arrays["obs"]
    if obs.ndim != 3:
        raise DatasetError(f"{where}: 'obs' must have shape [episodes, steps, {obs_dim}], got {obs.shape}")
    E, T = obs.shape[:2]
    if E < 1 or T < 1:
        raise DatasetError(f"{where}: need at least one episode of at least one step, got obs shape {obs.shape}")
    dims = {"S": obs_dim, "A": act_dim}
    for name, (sym, dtype) in STEP_FIELDS.items():
        a = arrays[name]
        expected = (E, T) if sym is None else (E, T, dims[sym])
        if a.shape != expected:
            raise DatasetError(f"{where}: {name!r} has shape {a.shape}, expected {expected} "
                               f"(episodes={E}, steps={T}, obs_dim={obs_dim}, act_dim={act_dim})")
        if a.dtype != dtype:
            raise DatasetError(f"{where}: {name!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    for name in ("obs", "action", "reward", "next_obs", "return_to_go"):
        if not np.isfinite(arrays[name]).all():
            raise DatasetError(f"{where}: {name!r} contains NaN or inf")
    q = arrays["q"]
    if np.isinf(q).any():
        raise DatasetError(f"{where}: 'q' contains inf (NaN is allowed and means 'no critic')")
    if np.abs(arrays["action"]).max() > 1.0 + 1e-5:
        raise DatasetError(f"{where}: actions must lie in [-1, 1] (max |a| = {np.abs(arrays['action']).max():.4g}); "
                           f"rescale them to the env's normalised action space")
    if T > 1:
        broken = (arrays["next_obs"][:, :-1] != arrays["obs"][:, 1:]).any(axis=-1)
        if broken.any():
            e, t = (int(i) for i in np.argwhere(broken)[0])
            i = int(np.argwhere(arrays["next_obs"][e, t] != arrays["obs"][e, t + 1])[0][0])
            raise DatasetError(
                f"{where}: episode {e}: next_obs[{t}] differs from obs[{t + 1}] (component {i}: "
                f"{float(arrays['next_obs'][e, t, i]):.9g} vs {float(arrays['obs'][e, t + 1, i]):.9g}; "
                f"{int(broken.sum())} step(s) "
                f"like this); within an episode each step's next_obs must be exactly the next step's obs. Store "
                f"each episode's steps in order, from one rollout (as record_episodes does)")
    done = arrays["terminated"] | arrays["truncated"]
    if (arrays["terminated"] & arrays["truncated"]).any():
        raise DatasetError(f"{where}: a step is both terminated and truncated; a time-limit end is truncated only")
    if done[:, :-1].any():
        e, t = np.argwhere(done[:, :-1])[0]
        raise DatasetError(f"{where}: episode {e} ends at step {t} before the last step {T - 1}; each row must be one "
                           f"whole episode, and all episodes must have the same length")
    if not done[:, -1].all():
        e = int(np.argwhere(~done[:, -1])[0][0])
        raise DatasetError(f"{where}: episode {e} does not end at its last step (neither terminated nor truncated); "
                           f"each row must be one whole episode")
    seeds = arrays.get("episode_seed")
    if seeds is not None:
        if seeds.shape != (E,) or seeds.dtype != np.int64:
            raise DatasetError(f"{where}: 'episode_seed' must be int64 of shape ({E},), got {seeds.dtype} {seeds.shape}")
    return E, T


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: task file is truncated or corrupt ({type(e).__name__}: {e}); delete it and "
                           f"rerun the collection (finished tasks are kept)") from e


def load_task_file(path: Path, entry: Mapping[str, Any], manifest: Mapping[str, Any], verify_sha256: bool = True) -> TaskData:
    """Load and validate one task file against its manifest entry."""
    if not path.is_file():
        raise DatasetError(f"{path}: task file listed in the manifest is missing; rerun the collection to recreate it")
    if verify_sha256 and entry.get("sha256"):
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise DatasetError(f"{path}: sha256 {digest[:12]}... does not match the manifest's {entry['sha256'][:12]}...; "
                               f"the file was modified or replaced. Delete it and rerun the collection")
    arrays = _load_npz(path)
    where = str(path)
    for name, dtype in TASK_FIELDS.items():
        if name not in arrays:
            raise DatasetError(f"{where}: array {name!r} is missing")
    if str(arrays["family"]) != manifest["family"]:
        raise DatasetError(f"{where}: task file is for family {str(arrays['family'])!r} but the manifest says "
                           f"{manifest['family']!r}; it was copied from another dataset")
    if str(arrays["task_id"]) != entry["task_id"]:
        raise DatasetError(f"{where}: task file holds task {str(arrays['task_id'])!r}, manifest entry is "
                           f"{entry['task_id']!r}")
    E, T = check_episode_arrays(arrays, int(manifest["obs_dim"]), int(manifest["act_dim"]), where)
    if (E, T) != (entry["n_episodes"], entry["episode_length"]):
        raise DatasetError(f"{where}: holds {E} episodes x {T} steps, manifest says {entry['n_episodes']} x "
                           f"{entry['episode_length']}")
    d = len(manifest["context_names"])
    cv = arrays["context_vector"]
    if cv.shape != (d,) or cv.dtype != np.float32:
        raise DatasetError(f"{where}: context_vector has shape {cv.shape} dtype {cv.dtype}, expected ({d},) float32 "
                           f"for context_names {manifest['context_names']}")
    if not np.allclose(cv, np.asarray(entry["context_vector"], dtype=np.float32), rtol=0, atol=1e-6):
        raise DatasetError(f"{where}: context_vector {cv.tolist()} differs from the manifest's {entry['context_vector']}")
    return TaskData(
        task_id=entry["task_id"], context=dict(entry["context"]), context_vector=cv,
        expert=ExpertInfo.from_dict(entry.get("expert")), episode_seed=arrays["episode_seed"],
        obs=arrays["obs"], action=arrays["action"], reward=arrays["reward"], next_obs=arrays["next_obs"],
        terminated=arrays["terminated"], truncated=arrays["truncated"], q=arrays["q"],
        return_to_go=arrays["return_to_go"], file=path)


_MANIFEST_KEYS = ("format_version", "family", "context_names", "obs_dim", "act_dim", "gamma", "tasks")
_ENTRY_KEYS = ("task_id", "file", "context", "context_vector", "n_episodes", "episode_length", "sha256")


def check_manifest(manifest: Any, path: Path) -> None:
    """Structural checks of a manifest dict. Raises DatasetError naming `path`."""
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: manifest must be a JSON object")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise DatasetError(f"{path}: manifest is missing {missing}; it was not written by hyperzero.datasets")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(f"{path}: format_version {manifest['format_version']} is not supported (this hyperzero "
                           f"reads version {FORMAT_VERSION}); rebuild the dataset with this version")
    if not isinstance(manifest["context_names"], list) or not manifest["context_names"]:
        raise DatasetError(f"{path}: context_names must be a non-empty list")
    bounds = manifest.get("context_bounds")
    if bounds is not None:
        b = np.asarray(bounds, dtype=np.float64) if isinstance(bounds, list) else None
        if b is None or b.shape != (len(manifest["context_names"]), 2) or not (b[:, 0] < b[:, 1]).all():
            raise DatasetError(f"{path}: context_bounds must be one [lo, hi] pair (lo < hi) per context name "
                               f"{manifest['context_names']}, got {bounds!r}")
    if not (isinstance(manifest["gamma"], (int, float)) and 0.0 <= manifest["gamma"] <= 1.0):
        raise DatasetError(f"{path}: gamma must be a number in [0, 1], got {manifest['gamma']!r}")
    seen = set()
    vectors: dict[tuple, str] = {}
    for i, entry in enumerate(manifest["tasks"]):
        miss = [k for k in _ENTRY_KEYS if k not in entry]
        if miss:
            raise DatasetError(f"{path}: task entry {i} is missing {miss}")
        if entry["task_id"] in seen:
            raise DatasetError(f"{path}: task {entry['task_id']!r} is listed twice")
        seen.add(entry["task_id"])
        if len(entry["context_vector"]) != len(manifest["context_names"]):
            raise DatasetError(f"{path}: task {entry['task_id']!r} has a context_vector of dimension "
                               f"{len(entry['context_vector'])}, but context_names {manifest['context_names']} has "
                               f"{len(manifest['context_names'])}")
        absent = [n for n in manifest["context_names"] if n not in entry["context"]]
        if absent:
            raise DatasetError(f"{path}: task {entry['task_id']!r} context lacks features {absent}")
        try:
            key = tuple(np.asarray(entry["context_vector"], dtype=np.float32).tolist())
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: task {entry['task_id']!r} has a non-numeric context_vector "
                               f"{entry['context_vector']!r}") from None
        if key in vectors:
            raise DatasetError(f"{path}: tasks {vectors[key]!r} and {entry['task_id']!r} have the same context vector "
                               f"{list(key)} over context_names {manifest['context_names']}; a model sees only those, "
                               f"so they are one input with two behaviours. Rebuild the dataset with context_names "
                               f"that include the feature they differ in, or without one of them")
        vectors[key] = entry["task_id"]
        if Path(entry["file"]).is_absolute() or ".." in Path(entry["file"]).parts:
            raise DatasetError(f"{path}: task file path {entry['file']!r} must be relative to the dataset directory")


def _check_against_family(manifest: Mapping[str, Any], path: Path) -> None:
    """The family must exist and agree with the manifest's dims, names and contexts."""
    from hyperzero.envs import get_family

    try:
        fam = get_family(manifest["family"])
    except (KeyError, ValueError) as e:
        raise DatasetError(f"{path}: unknown family {manifest['family']!r} ({e})") from e
    if (fam.obs_dim, fam.act_dim) != (manifest["obs_dim"], manifest["act_dim"]):
        raise DatasetError(f"{path}: family {manifest['family']!r} has obs_dim={fam.obs_dim}, act_dim={fam.act_dim} "
                           f"but the manifest says {manifest['obs_dim']}, {manifest['act_dim']}; the dataset was made "
                           f"with a different environment version: rebuild it")
    unknown = [n for n in manifest["context_names"] if n not in fam.context_space.names]
    if unknown:
        raise DatasetError(f"{path}: context_names {unknown} are not features of {manifest['family']!r} "
                           f"(features: {list(fam.context_space.names)})")
    names = list(manifest["context_names"])
    first_fixed = None
    for entry in manifest["tasks"]:
        try:
            full = fam.context_space.validate(entry["context"], allow_extrapolation=True)
        except ValueError as e:
            raise DatasetError(f"{path}: task {entry['task_id']!r}: {e}; rebuild the dataset") from None
        fixed = {k: v for k, v in full.items() if k not in names}
        if first_fixed is None:
            first_fixed = (entry["task_id"], fixed)
        elif fixed != first_fixed[1]:
            raise DatasetError(f"{path}: task {entry['task_id']!r} has {fixed} outside context_names {names}, but task "
                               f"{first_fixed[0]!r} has {first_fixed[1]}; features a model does not see must be the "
                               f"same in every task. Rebuild the dataset with context_names that include them")
        vec = np.asarray(fam.context_space.to_vector(entry["context"], manifest["context_names"]), dtype=np.float32)
        if not np.allclose(vec, np.asarray(entry["context_vector"], dtype=np.float32), rtol=1e-6, atol=1e-6):
            raise DatasetError(f"{path}: task {entry['task_id']!r}: context_vector {entry['context_vector']} does not "
                               f"match its context {entry['context']} ({vec.tolist()} expected)")


def read_manifest(directory: str | Path) -> dict:
    import json

    from hyperzero.utils.io import read_json

    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        hint = " (the directory does not exist)" if not Path(directory).exists() else ""
        raise DatasetError(f"{path}: no dataset manifest{hint}; create the dataset with `hyperzero experts collect` "
                           f"or hyperzero.datasets.DatasetWriter")
    try:
        manifest = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: manifest is not valid JSON ({e}); it is rewritten atomically, so it was edited "
                           f"by hand or copied partially") from e
    check_manifest(manifest, path)
    return manifest


def load_dataset(directory: str | Path, verify_sha256: bool = True, allow_unfinalized: bool = False) -> RolloutDataset:
    """Load and validate a dataset directory. Any problem raises DatasetError naming the file.

    `allow_unfinalized=True` loads a collection that was interrupted before `finalize()` (its
    finished tasks are complete and valid; only the task list may be partial).
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    mpath = directory / MANIFEST_NAME
    if not manifest.get("finalized", False) and not allow_unfinalized:
        raise DatasetError(f"{mpath}: the dataset was never finalized (an interrupted collection?); rerun the "
                           f"collection to finish it, or load_dataset(..., allow_unfinalized=True)")
    if not manifest["tasks"]:
        raise DatasetError(f"{mpath}: the dataset has no tasks")
    _check_against_family(manifest, mpath)
    tasks = [load_task_file(directory / e["file"], e, manifest, verify_sha256) for e in manifest["tasks"]]
    return RolloutDataset(directory=directory, family=manifest["family"], context_names=list(manifest["context_names"]),
                          gamma=float(manifest["gamma"]), obs_dim=int(manifest["obs_dim"]),
                          act_dim=int(manifest["act_dim"]), tasks=tasks, manifest=manifest)
