"""Gymnasium wrappers for agents from other libraries (Stable-Baselines3, CleanRL): docs/gymnasium.md.

    import gymnasium as gym
    from hyperzero.envs.wrappers import ContextObservation
    env = ContextObservation(gym.make("hyperzero/cheetah-run-v0", context={"speed": -4}))
    obs, info = env.reset(seed=0)   # obs = [17 state features, speed, torso_length normalised to [-1, 1]]
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np

from hyperzero.envs.gym_env import ContextualEnv


class ContextObservation(gym.ObservationWrapper):
    """Append the task's context features to the observation, for context-conditioned (UVFA-style) agents.

    The observation becomes `[obs, c]` (float32) with `c` the context values of `names` in that order
    (default: the family's non-optional features, e.g. speed and torso_length for cheetah-run; an optional
    feature such as gravity may be named too, and then reads its default while a context leaves it unset).
    `normalize=True` maps each feature's nominal range onto [-1, 1] (the affine map of `ContextSpace.normalize`
    that hyperzero's models use); an extrapolated context lands outside [-1, 1]. `observation_space` is the
    wrapped env's Box extended by the context's bounds: the physical limits of each feature (normalised with
    the same map when `normalize`), so every valid context lies inside it.

    The context is read from the underlying `ContextualEnv` at every observation, so a task switched with
    `reset(options={"context": {...}})` shows in the very first observation of the new episode.
    """

    def __init__(self, env: gym.Env, names: Sequence[str] | None = None, normalize: bool = True):
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, ContextualEnv):
            raise TypeError(f"ContextObservation wraps a hyperzero env (gym.make('hyperzero/<family>-v0', ...) or "
                            f"hyperzero.envs.make), got {type(base).__name__}")
        space = base.family.context_space
        if names is None:
            names = [n for n, f in space.features.items() if not f.optional]
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be distinct context features of {base.family.name}, got {names} "
                             f"(features: {space.names})")
        bounds = space.bounds(names)  # [d, 2] nominal (lo, hi); unknown names: a ValueError listing the features
        self.normalize = bool(normalize)
        obs_space = env.observation_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise TypeError(f"ContextObservation needs a flat Box observation space, got {obs_space}")
        self.context_names: list[str] = names
        self._space = space
        self._centre, self._width = bounds.sum(axis=1), bounds[:, 1] - bounds[:, 0]
        limits = np.array([space.features[n].limits for n in names], dtype=np.float64)
        lo, hi = self._scale(limits[:, 0]), self._scale(limits[:, 1])
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([obs_space.low.astype(np.float32), np.asarray(lo, np.float32)]),
            high=np.concatenate([obs_space.high.astype(np.float32), np.asarray(hi, np.float32)]),
            dtype=np.float32)
        self._obs_dim = int(obs_space.shape[0])
        self._context_obj = None
        self._features = np.zeros(len(names), np.float32)

    def _scale(self, values: np.ndarray) -> np.ndarray:
        """ContextSpace.normalize's affine map (nominal [lo, hi] -> [-1, 1]) written as (2v - (lo + hi)) / (hi - lo),
        which is exactly 0 at the middle of the range; identity without `normalize`."""
        values = np.asarray(values, dtype=np.float64)
        return (2.0 * values - self._centre) / self._width if self.normalize else values

    @property
    def context_slice(self) -> slice:
        """Where the context features sit in the observation: `obs[..., env.context_slice]`."""
        return slice(self._obs_dim, self._obs_dim + len(self.context_names))

    def context_features(self) -> np.ndarray:
        """The appended features of the current task, float32 [len(context_names)]."""
        context = self.env.unwrapped.context
        if context is not self._context_obj:  # a new task (the env rebuilds its context dict on a switch)
            vec = np.array([context.get(n, self._space.features[n].default) for n in self.context_names], np.float64)
            self._features = self._scale(vec).astype(np.float32)
            self._context_obj = context
        return self._features

    def observation(self, observation):
        return np.concatenate([np.asarray(observation, np.float32), self.context_features()])


__all__ = ["ContextObservation"]
