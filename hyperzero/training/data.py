"""Context normalisation, the task-grouped sampler (train tasks only) and fixed validation batches."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from hyperzero.models.base import TaskBatch

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "q")


class ContextNormalizer:
    """Maps raw context vectors (dataset.context_names order) to model inputs.

    mode 'bounds': affine map of each feature's nominal (lo, hi) onto [-1, 1] (held-out or
    extrapolated contexts land at or beyond ±1); mode 'raw': identity (the authors' choice).
    """

    def __init__(self, names: Sequence[str], mode: str = "bounds", bounds: np.ndarray | None = None):
        self.names, self.mode = list(names), mode
        if mode == "bounds":
            b = np.asarray(bounds, dtype=np.float64).reshape(len(self.names), 2)
            if np.any(b[:, 1] <= b[:, 0]):
                raise ValueError(f"context bounds must have lo < hi for every feature of {self.names} (got {b.tolist()})")
            self.lo, self.hi = b[:, 0], b[:, 1]
        elif mode == "raw":
            self.lo = self.hi = None
        else:
            raise ValueError(f"context normalisation must be 'bounds' or 'raw' (got {mode!r})")

    @classmethod
    def for_dataset(cls, dataset, mode: str) -> "ContextNormalizer":
        if mode == "raw":
            return cls(dataset.context_names, "raw")
        bounds = (getattr(dataset, "manifest", None) or {}).get("context_bounds")
        if isinstance(bounds, dict):  # {name: [lo, hi]}
            bounds = [bounds[n] for n in dataset.context_names] if all(n in bounds for n in dataset.context_names) else None
        if bounds is None:
            try:
                from hyperzero.envs import get_family

                bounds = get_family(dataset.family).context_space.bounds(dataset.context_names)
            except (ImportError, KeyError, ValueError) as e:
                raise ValueError(f"cannot find context bounds of family {dataset.family!r} for features "
                                 f"{dataset.context_names} ({e}); use context_norm='raw' (--context-norm raw)") from e
        return cls(dataset.context_names, "bounds", bounds)

    def vector(self, context) -> np.ndarray:
        """A context dict (names -> value; extra keys ignored) or a raw vector -> raw float vector."""
        if isinstance(context, dict):
            missing = [n for n in self.names if n not in context]
            if missing:
                raise ValueError(f"context lacks features {missing}; this model was trained on {self.names}")
            return np.array([float(context[n]) for n in self.names], dtype=np.float64)
        vec = np.asarray(context, dtype=np.float64).reshape(-1)
        if vec.shape[0] != len(self.names):
            raise ValueError(f"context vector has {vec.shape[0]} values; expected {len(self.names)} ({self.names})")
        return vec

    def __call__(self, context) -> np.ndarray:
        vec = self.vector(context)
        if self.mode == "raw":
            return vec.astype(np.float32)
        return (2.0 * (vec - self.lo) / (self.hi - self.lo) - 1.0).astype(np.float32)

    def state_dict(self) -> dict:
        return {"names": self.names, "mode": self.mode,
                "bounds": None if self.lo is None else np.stack([self.lo, self.hi], 1).tolist()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "ContextNormalizer":
        return cls(d["names"], d["mode"], d["bounds"])


def task_arrays(task, need_q: bool) -> dict[str, np.ndarray]:
    """A task's transitions flattened to [N, ...] float32; q is zero-filled when the method has no Q."""
    out = {}
    for f in _FIELDS:
        x = np.asarray(getattr(task, f))
        x = x.reshape(-1, *x.shape[2:]).astype(np.float32)
        out[f] = x
    if need_q and not np.isfinite(out["q"]).all():
        raise ValueError(f"task {task.task_id!r} has no expert Q-values (NaN), but this method fits Q; "
                         "use hyperzero_without_q or mlp_policy, or rebuild the dataset with expert critics")
    if not need_q:
        out["q"] = np.nan_to_num(out["q"], nan=0.0)
    return out


def context_noise_std(contexts: np.ndarray, noise: float, unit: str) -> np.ndarray:
    """Per-feature std of the noise on the normalised training contexts [n_tasks, d].

    'bounds': `noise` for every feature (normalised units). 'spacing': `noise` x the median distance from each
    distinct training value of a feature to its nearest other value, so the same `noise` keeps a task's noisy
    contexts as close to it, relative to its neighbours, on a coarse grid as on a fine one; a feature every
    training task shares (a reward setting's body length) gets none.
    """
    contexts = np.asarray(contexts, np.float64).reshape(len(contexts), -1)
    if unit == "bounds":
        return np.full(contexts.shape[1], float(noise), np.float32)
    if unit != "spacing":
        raise ValueError(f"context noise unit must be 'spacing' or 'bounds' (got {unit!r})")
    std = np.zeros(contexts.shape[1], np.float32)
    for j in range(contexts.shape[1]):
        values = np.unique(contexts[:, j])
        if len(values) > 1:
            gaps = np.diff(values)
            nearest = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
            std[j] = noise * float(np.median(nearest))
    return std


class TaskSampler:
    """Grouped batches from TRAIN tasks only: K distinct tasks, batch_size // K samples from each.

    The sampler holds only the arrays of the tasks it is given, and refuses any task in `forbidden`
    (the fit passes the test and validation ids), so test data cannot reach a gradient step.
    `context_noise` (a std, or one per feature; see `context_noise_std`) adds Gaussian noise to each batch's
    contexts (the labels stay the expert's): nearby contexts are asked for the same behaviour, a smoothness prior
    for tasks between or beyond few training tasks. `sign_origins` holds, per feature, the (normalised) value a
    signed feature must not cross (a target speed's 0; NaN for other features): noise that would cross it is
    reflected back, since the other side asks for the opposite direction.
    """

    def __init__(self, tasks: Sequence, contexts: np.ndarray, tasks_per_batch: int, batch_size: int, seed: int,
                 need_q: bool, device: torch.device | str = "cpu", forbidden: Iterable[str] = (),
                 context_noise: float | np.ndarray = 0.0, sign_origins: np.ndarray | None = None):
        self.task_ids = [t.task_id for t in tasks]
        leaked = sorted(set(self.task_ids) & set(forbidden))
        if leaked:
            raise AssertionError(f"sampler was given held-out tasks {leaked}: refusing to train on them")
        if not tasks:
            raise ValueError("no training tasks: the split left nothing to train on; use more tasks or a smaller val_fraction")
        self.k = min(int(tasks_per_batch), len(tasks))
        self.per_task = int(batch_size) // self.k
        arrays = [task_arrays(t, need_q) for t in tasks]
        sizes = [a["obs"].shape[0] for a in arrays]
        if min(sizes) < 1:
            raise ValueError("a training task has no transitions")
        m = max(sizes)
        self.device = torch.device(device)
        self.data = {}
        for f in _FIELDS:
            shape = arrays[0][f].shape[1:]
            buf = np.zeros((len(tasks), m, *shape), np.float32)
            for i, a in enumerate(arrays):
                buf[i, :a[f].shape[0]] = a[f]
            self.data[f] = torch.from_numpy(buf).to(self.device)
        self.sizes = torch.tensor(sizes, dtype=torch.float64, device=self.device)
        self.contexts = torch.as_tensor(np.asarray(contexts, np.float32), device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        std = np.broadcast_to(np.asarray(context_noise, np.float32), self.contexts.shape[1:])
        if not (np.isfinite(std).all() and (std >= 0).all()):
            raise ValueError(f"context noise must be finite stds >= 0 (got {std.tolist()})")
        self.context_noise = torch.as_tensor(std.copy(), device=self.device) if std.any() else None
        self.sign_origins = (None if sign_origins is None or np.isnan(sign_origins).all()
                             else torch.as_tensor(np.asarray(sign_origins, np.float32), device=self.device))

    def sample(self) -> TaskBatch:
        g = self.generator
        tasks = torch.randperm(len(self.task_ids), generator=g, device=self.device)[:self.k]
        u = torch.rand(self.k, self.per_task, generator=g, device=self.device, dtype=torch.float64)
        idx = (u * self.sizes[tasks, None]).long()
        rows = tasks[:, None]
        context = self.contexts[tasks]
        if self.context_noise is not None:  # drawn after the samples, so a noiseless fit's stream is unchanged
            noisy = context + self.context_noise * torch.randn(context.shape, generator=g, device=self.device)
            if self.sign_origins is not None:  # NaN origins compare False: those features are left as drawn
                crossed = (noisy - self.sign_origins) * (context - self.sign_origins) < 0
                noisy = torch.where(crossed, 2 * self.sign_origins - noisy, noisy)
            context = noisy
        return TaskBatch(context=context, **{f: self.data[f][rows, idx] for f in _FIELDS})

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, d: dict) -> None:
        self.generator.set_state(d["generator"].cpu())   # generator states are CPU byte tensors, on any device


def validation_batch(tasks: Sequence, contexts: np.ndarray, samples_per_task: int, seed: int, need_q: bool,
                     device: torch.device | str = "cpu") -> TaskBatch | None:
    """One fixed grouped batch [n_val_tasks, samples_per_task] (drawn once, the same at every eval)."""
    if not tasks:
        return None
    rng = np.random.default_rng(seed)
    cols = {f: [] for f in _FIELDS}
    for t in tasks:
        a = task_arrays(t, need_q)
        n = a["obs"].shape[0]
        idx = rng.choice(n, size=samples_per_task, replace=n < samples_per_task)
        for f in _FIELDS:
            cols[f].append(a[f][idx])
    return TaskBatch(context=torch.as_tensor(np.asarray(contexts, np.float32)),
                     **{f: torch.from_numpy(np.stack(v)) for f, v in cols.items()}).to(device)


def chunks(batch: TaskBatch, k: int) -> list[TaskBatch]:
    """Split a grouped batch into batches of at most k tasks."""
    n = batch.num_tasks
    return [TaskBatch(**{f: v[i:i + k] for f, v in batch.__dict__.items()}) for i in range(0, n, k)]
