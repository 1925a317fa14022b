"""Roll any policy in a contextual env and return the per-step arrays a dataset stores.

`record_episodes` works with any callable obs -> action (a TD3 expert, a Stable-Baselines3 model,
a scripted controller), so any RL library can fill a dataset through `DatasetWriter.add_task`.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hyperzero.datasets.format import Episodes

# Dataset episode seeds are drawn from this half-open range. Expert training and evaluation use
# small seeds (the authors: 2; our TD3Config.seed default 2 and its eval seeds near it), and
# evaluation of fitted models must avoid this range too, so dataset start states are never reused.
DATASET_SEED_RANGE: tuple[int, int] = (1_000_000_000, 2_000_000_000)


def dataset_episode_seeds(seed: int, task_id: str, n_episodes: int, exclude: Sequence[int] = ()) -> list[int]:
    """`n_episodes` distinct env seeds for one task, a pure function of (seed, task_id).

    Drawn from DATASET_SEED_RANGE with numpy's SeedSequence keyed by the seed and a hash of the
    task id, so two tasks never share start-state streams and nothing depends on task order.
    Seeds in `exclude` (e.g. the expert's own training/eval seeds) are skipped.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    key = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), *key]))
    lo, hi = DATASET_SEED_RANGE
    banned = {int(s) for s in exclude}
    out: list[int] = []
    while len(out) < n_episodes:
        s = int(rng.integers(lo, hi))
        if s not in banned and s not in out:
            out.append(s)
    return out


def record_episodes(family: str, context: Mapping[str, float] | None, policy_fn: Callable[[np.ndarray], Any],
                    n_episodes: int, seeds: Sequence[int], q_fn: Callable[[np.ndarray, np.ndarray], Any] | None = None,
                    batched: bool = False, allow_extrapolation: bool = True, action_noise: float = 0.0) -> Episodes:
    """Roll `policy_fn` for `n_episodes` whole episodes of `family` at `context`; episode e resets with `seeds[e]`.

    policy_fn: obs [S] float32 -> action [A] (or, with `batched=True`, obs [E, S] -> actions [E, A]
      for all episodes at once, stepped in lockstep: much faster for a neural policy). Actions are
      clipped to [-1, 1], the env's action space; the clipped action is what is stored and executed.
    action_noise: std σ of Gaussian noise added to the EXECUTED action (then clipped), while the stored label
      stays the policy's clean action (DART, Laskey et al. 2017): the episodes visit states off the policy's own
      path, labelled with what the policy does there. The noise is drawn from a generator seeded by the episode
      seeds, so a rerun records the same episodes. With σ > 0 the stored reward and next_obs follow the executed
      action, so r + γ Q(s', π(s')) matches Q(s, a_executed), not Q(s, a*): the TD relation holds only up to the
      gap Q(s, a*) − Q(s, a_executed), second order in σ near the policy's optimum.
    q_fn: optional (obs [N, S], action [N, A]) -> [N] Q-values of the producer's critic, called once
      per episode on all of its steps. Without it `q` is None (stored as NaN).
    Episodes must all last the same number of steps (the dm_control families always do: they end
    only by the time limit). Returns an `Episodes` ready for `DatasetWriter.add_task`.
    """
    from hyperzero.envs import get_family, make

    fam = get_family(family)
    seeds = [int(s) for s in seeds]
    if len(seeds) != n_episodes:
        raise ValueError(f"record_episodes: got {len(seeds)} seeds for n_episodes={n_episodes}; give one seed per episode")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"record_episodes: seeds repeat ({seeds}); repeated seeds give identical episodes")
    E, S, A, T_max = n_episodes, fam.obs_dim, fam.act_dim, fam.episode_steps
    if not (np.isfinite(action_noise) and 0.0 <= action_noise <= 1.0):
        raise ValueError(f"action_noise must be a std in [0, 1] (actions live in [-1, 1]), got {action_noise}")
    noise = np.random.default_rng([*seeds, 0x44415254]) if action_noise > 0 else None  # "DART"
    envs = [make(family, context=context, allow_extrapolation=allow_extrapolation) for _ in range(E)]
    try:
        obs = np.zeros((E, T_max, S), np.float32)
        action = np.zeros((E, T_max, A), np.float32)
        reward = np.zeros((E, T_max), np.float32)
        next_obs = np.zeros((E, T_max, S), np.float32)
        terminated = np.zeros((E, T_max), bool)
        truncated = np.zeros((E, T_max), bool)
        current = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
        T = None
        for t in range(T_max + 1):
            if t == T_max:
                raise RuntimeError(f"{family}: episodes did not end within episode_steps={T_max}")
            if batched:
                a = np.asarray(policy_fn(current), dtype=np.float32)
            else:
                a = np.stack([np.asarray(policy_fn(o), dtype=np.float32).reshape(A) for o in current])
            if a.shape != (E, A):
                raise ValueError(f"policy_fn returned actions of shape {a.shape}, expected {(E, A) if batched else (A,)}")
            if not np.isfinite(a).all():
                raise ValueError(f"policy_fn returned a non-finite action at step {t}")
            a = np.clip(a, -1.0, 1.0)
            executed = a if noise is None else np.clip(
                a + action_noise * noise.standard_normal(a.shape).astype(np.float32), -1.0, 1.0)
            for e, env in enumerate(envs):
                o2, r, term, trunc, _ = env.step(executed[e])
                next_obs[e, t], reward[e, t], terminated[e, t], truncated[e, t] = o2, r, term, trunc
            obs[:, t], action[:, t] = current, a
            done = terminated[:, t] | truncated[:, t]
            if done.any():
                if not done.all():
                    raise ValueError(f"{family}: episodes {np.flatnonzero(done).tolist()} ended at step {t} but others "
                                     f"did not; the dataset format stores equal-length episodes")
                T = t + 1
                break
            current = next_obs[:, t]
        sl = slice(0, T)
        ep = Episodes(obs=obs[:, sl].copy(), action=action[:, sl].copy(), reward=reward[:, sl].copy(),
                      next_obs=next_obs[:, sl].copy(), terminated=terminated[:, sl].copy(),
                      truncated=truncated[:, sl].copy(), episode_seed=np.asarray(seeds, dtype=np.int64))
        if q_fn is not None:
            q = np.stack([np.asarray(q_fn(ep.obs[e], ep.action[e]), dtype=np.float32).reshape(-1) for e in range(E)])
            if q.shape != (E, T):
                raise ValueError(f"q_fn returned {q.shape[1]} values for an episode of {T} steps")
            ep.q = q
        return ep
    finally:
        for env in envs:
            env.close()
