"""Real environment rollouts: several episodes of one task in lockstep.

Used by the experts' quality gate (the do-nothing floor), checkpoint selection on validation tasks during a
fit, and the held-out evaluation. A generated policy is specific to one context, so the batch that pays off
is *episodes of the same task*: E envs of that task step together and the policy acts on an [E, S] batch in
one call. Every method, the expert and the do-nothing floor use the same episode seeds, so they start from
the same initial states.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

ActFn = Callable[[np.ndarray], np.ndarray]


def rollout_returns(family: str, context: Mapping[str, float], act: ActFn, episode_seeds: Sequence[int],
                    max_steps: int | None = None) -> np.ndarray:
    """Undiscounted return of each episode (one per seed) of `act` on the task `context`.

    The episodes run in lockstep: one env per seed, reset with that seed, and the policy called once
    per step on the stacked observations of the episodes still running.
    """
    from hyperzero.envs import make

    if not len(episode_seeds):
        raise ValueError("rollout_returns needs at least one episode seed")
    envs = [make(family, context, seed=int(s)) for s in episode_seeds]
    try:
        obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, episode_seeds)])
        returns = np.zeros(len(envs), dtype=np.float64)
        running = np.ones(len(envs), dtype=bool)
        steps = 0
        while running.any():
            idx = np.flatnonzero(running)
            actions = act(obs[idx])
            if actions.shape != (len(idx), envs[0].action_space.shape[0]):
                raise ValueError(f"policy returned actions of shape {actions.shape} for {len(idx)} observations; "
                                 f"expected ({len(idx)}, {envs[0].action_space.shape[0]})")
            for row, i in enumerate(idx):
                next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
                returns[i] += reward
                obs[i] = next_obs
                if terminated or truncated:
                    running[i] = False
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        return returns
    finally:
        for env in envs:
            env.close()


def zero_action_policy(act_dim: int) -> ActFn:
    """The do-nothing policy a = 0: the floor every score is measured from."""
    def act(obs: np.ndarray) -> np.ndarray:
        return np.zeros((np.asarray(obs).shape[0], act_dim), dtype=np.float32)

    return act
