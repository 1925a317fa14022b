"""A small synthetic contextual family with a known, context-dependent optimal policy (for tests,
benchmarks and smoke runs; no simulator needed).

Context c ∈ [lo, hi]^d (raw units; bounds stored in the manifest as `context_bounds`). With
u = c normalised to [-1, 1], the "expert" is linear feedback squashed by tanh:

    a*(s; c) = tanh(K(u) s),     K(u) = K0 + Σ_j u_j K_j       (gains vary smoothly with the context)
    s'       = 0.8 s + 0.3 · pad(a*) + 0.3 ε,  r = -|s'|² / S,  q* = discounted return-to-go

so a model that maps c to K(c) generalises to held-out contexts, and a context-blind one cannot.
The object returned duck-types `hyperzero.datasets.RolloutDataset` (the attributes `fit` reads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SyntheticTask:
    task_id: str
    context: dict[str, float]
    context_vector: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    q: np.ndarray
    return_to_go: np.ndarray

    @property
    def has_q(self) -> bool:
        return bool(np.isfinite(self.q).all())


@dataclass
class SyntheticDataset:
    family: str
    context_names: list[str]
    gamma: float
    obs_dim: int
    act_dim: int
    tasks: list[SyntheticTask]
    manifest: dict = field(default_factory=dict)
    directory: Path = Path("<synthetic>")

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]

    def optimal_action(self, context_vector: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """The known optimal policy a*(s; c) for any (raw) context, e.g. a held-out one."""
        return np.tanh(obs @ self.manifest["_gain"](np.asarray(context_vector, np.float64)).T).astype(np.float32)


def make_synthetic_dataset(contexts: np.ndarray | None = None, n_tasks: int = 16, ctx_dim: int = 1, obs_dim: int = 4,
                           act_dim: int = 2, n_episodes: int = 2, episode_length: int = 100, gamma: float = 0.9,
                           bounds: tuple[float, float] = (-2.0, 2.0), seed: int = 0) -> SyntheticDataset:
    rng = np.random.default_rng(seed)
    lo, hi = bounds
    if contexts is None:
        contexts = rng.uniform(lo, hi, size=(n_tasks, ctx_dim))
    contexts = np.asarray(contexts, dtype=np.float64).reshape(len(contexts), -1)
    ctx_dim = contexts.shape[1]
    base = np.random.default_rng(1234)  # the family (gains) is fixed; `seed` only draws tasks and episodes
    k0 = base.normal(0, 0.7, size=(act_dim, obs_dim))
    kj = base.normal(0, 1.0, size=(ctx_dim, act_dim, obs_dim))

    def gain(c: np.ndarray) -> np.ndarray:
        u = 2.0 * (c - lo) / (hi - lo) - 1.0
        return k0 + np.einsum("j,jas->as", u, kj)

    names = [f"c{j}" for j in range(ctx_dim)]
    tasks = []
    for c in contexts:
        k = gain(c)
        obs = np.zeros((n_episodes, episode_length, obs_dim), np.float32)
        act = np.zeros((n_episodes, episode_length, act_dim), np.float32)
        nxt = np.zeros_like(obs)
        for e in range(n_episodes):
            s = rng.normal(0, 1, obs_dim)
            for t in range(episode_length):
                a = np.tanh(k @ s)
                s2 = 0.8 * s + 0.3 * np.pad(a, (0, max(0, obs_dim - act_dim)))[:obs_dim] + 0.3 * rng.normal(0, 1, obs_dim)
                obs[e, t], act[e, t], nxt[e, t] = s, a, s2
                s = s2
        reward = -(nxt ** 2).mean(-1).astype(np.float32)
        rtg = np.zeros_like(reward)
        running = np.zeros(n_episodes, np.float32)
        for t in reversed(range(episode_length)):
            running = reward[:, t] + gamma * running
            rtg[:, t] = running
        ctx = {n: float(v) for n, v in zip(names, c)}
        tid = "_".join(f"{n}={v:.4f}" for n, v in ctx.items())
        truncated = np.zeros((n_episodes, episode_length), bool)
        truncated[:, -1] = True
        tasks.append(SyntheticTask(tid, ctx, c.astype(np.float32), obs, act, reward, nxt,
                                   np.zeros((n_episodes, episode_length), bool), truncated, rtg.copy(), rtg))
    manifest = {"context_bounds": [[lo, hi]] * ctx_dim, "_gain": gain}
    return SyntheticDataset("synthetic-linear", names, gamma, obs_dim, act_dim, tasks, manifest)


def write_synthetic_dataset(directory: str | Path, family: str = "cheetah-run", feature: str = "speed",
                            values=(-8.0, -6.0, -4.0, -2.0, 2.0, 4.0, 6.0, 8.0), n_episodes: int = 1,
                            episode_length: int = 50, gamma: float = 0.99, seed: int = 0) -> Path:
    """Write the synthetic policy family in the real dataset format, shaped like `family` (obs/act dims,
    one varied `feature` with the family's bounds), for end-to-end tests of fit and the CLI."""
    from hyperzero.datasets import DatasetWriter
    from hyperzero.envs import get_family

    fam = get_family(family)
    lo, hi = fam.context_space.bounds([feature])[0]
    ds = make_synthetic_dataset(np.asarray(values, dtype=np.float64)[:, None], obs_dim=fam.obs_dim,
                                act_dim=fam.act_dim, n_episodes=n_episodes, episode_length=episode_length,
                                gamma=gamma, bounds=(float(lo), float(hi)), seed=seed)
    writer = DatasetWriter(directory, family, [feature], gamma=gamma, overwrite=True)
    for i, t in enumerate(ds.tasks):
        episodes = {"obs": t.obs, "action": t.action, "reward": t.reward, "next_obs": t.next_obs,
                    "terminated": t.terminated, "truncated": t.truncated, "q": t.q,
                    "episode_seed": np.arange(n_episodes, dtype=np.int64) + 1000 * i}
        writer.add_task({feature: float(t.context_vector[0])}, episodes, {"source": "synthetic"})
    writer.finalize()
    return Path(directory)
