"""Rollouts for evaluation: the lockstep episode runner (`hyperzero.envs.rollout`, shared with the experts'
gate and a fit's checkpoint selection) and the torch-policy wrapper (`hyperzero.training.rollout`) are
re-exported here; rendering one episode for videos is evaluation's own."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from hyperzero.training.rollout import ActFn, numpy_policy, rollout_returns, zero_action_policy  # noqa: F401


def render_episode(family: str, context: Mapping[str, float], act: ActFn, seed: int, steps: int,
                   every: int = 1, width: int = 320, height: int = 240) -> tuple[list[np.ndarray], float]:
    """Frames (every `every`-th step) and return of one episode of at most `steps` steps."""
    from hyperzero.envs import make
    from hyperzero.envs.render import rollout_frames

    env = make(family, context, seed=seed, render_mode="rgb_array", width=width, height=height)
    try:
        return rollout_frames(env, lambda obs: act(obs[None])[0], steps, seed=seed, every=every)
    finally:
        env.close()
