"""Gymnasium API over the contextual dm_control families."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from hyperzero.envs.context import context_id
from hyperzero.envs.family import DEFAULT_VALUE_AT_MARGIN


def flatten_observation(observation: Mapping[str, Any]) -> np.ndarray:
    """dm_control's OrderedDict observation as one float32 vector, in the task's order."""
    return np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for v in observation.values()])


def _fast_flatten(observation: Mapping[str, Any]) -> np.ndarray:
    # Same result as flatten_observation when every entry is at least 1-D (checked at reset).
    return np.concatenate(tuple(observation.values()), dtype=np.float32)


class ContextualEnv(gym.Env):
    """One task of a contextual family as a Gymnasium env.

    * observations: float32 Box; actions: float32 Box in [-1, 1] (MuJoCo clamps the control to it);
    * `info["context"]` (dict) and `info["context_id"]` on reset and step;
    * the 1000-step time limit ends episodes with `truncated=True, terminated=False`;
    * `reset(seed=s)` reseeds dm_control's task RNG, so same seed + context -> same episode;
    * `reset(options={"context": {...}})` switches the task (the model is rebuilt).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, family: str, context: Mapping[str, float] | None = None, seed: int | None = None,
                 value_at_margin: float = DEFAULT_VALUE_AT_MARGIN, allow_extrapolation: bool = False,
                 render_mode: str | None = None, width: int = 320, height: int = 240, camera_id: int = 0):
        from hyperzero.envs import get_family

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.family = get_family(family)
        self.render_mode = render_mode
        self._render_size = (height, width)
        self._camera_id = camera_id
        self._value_at_margin = value_at_margin
        self._allow_extrapolation = allow_extrapolation
        self._pending_seed = seed
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.family.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.family.act_dim,), np.float32)
        self._build(context)

    def _build(self, context: Mapping[str, float] | None) -> None:
        self.context = self.family.context_space.validate(context, self._allow_extrapolation)
        self.context_id = context_id(self.context)
        self._flatten_fn = None
        self._env = self.family.make_dmc(self.context, seed=self._pending_seed, value_at_margin=self._value_at_margin,
                                         allow_extrapolation=self._allow_extrapolation)

    @property
    def dm_env(self):
        """The underlying dm_control `Environment`."""
        return self._env

    @property
    def physics(self):
        return self._env.physics

    def _info(self) -> dict[str, Any]:
        return {"context": dict(self.context), "context_id": self.context_id}

    def _flatten(self, observation) -> np.ndarray:
        if self._flatten_fn is None:
            all_1d = all(np.ndim(v) >= 1 for v in observation.values())
            self._flatten_fn = _fast_flatten if all_1d else flatten_observation
        return self._flatten_fn(observation)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "context" in options:
            self._pending_seed = seed
            change = options["context"]  # a partial context: unset features keep their current values
            self._build({**self.context, **change} if isinstance(change, Mapping) else change)
        elif seed is not None:
            self._env.task._random = np.random.RandomState(seed)
        timestep = self._env.reset()
        return self._flatten(timestep.observation), self._info()

    def step(self, action):
        # No clipping here: every family's actuators are ctrllimited to [-1, 1], so MuJoCo clamps.
        timestep = self._env.step(action)
        terminated = truncated = False
        if timestep.last():
            # dm_control ends a time limit with discount 1 (truncation), a true end with discount 0.
            terminated = timestep.discount == 0.0
            truncated = not terminated
        return self._flatten(timestep.observation), float(timestep.reward or 0.0), terminated, truncated, self._info()

    def render(self):
        height, width = self._render_size
        return self._env.physics.render(height=height, width=width, camera_id=self._camera_id)

    def close(self):
        self._env.close() if hasattr(self._env, "close") else None


def make(family: str, context: Mapping[str, float] | None = None, seed: int | None = None, **kwargs) -> ContextualEnv:
    """A Gymnasium env for one task; same as `gymnasium.make("hyperzero/<family>-v0", context=...)` minus checkers."""
    return ContextualEnv(family, context=context, seed=seed, **kwargs)


def make_vector(family: str, contexts: Sequence[Mapping[str, float]], seed: int | None = None,
                vectorization_mode: str = "sync", **kwargs) -> gym.vector.VectorEnv:
    """A vector env in which sub-env i runs `contexts[i]` (seeded seed + i on the first reset)."""
    if not contexts:
        raise ValueError("make_vector needs at least one context")
    fns = [lambda ctx=ctx, i=i: ContextualEnv(family, ctx, seed=None if seed is None else seed + i, **kwargs)
           for i, ctx in enumerate(contexts)]
    if vectorization_mode == "sync":
        return gym.vector.SyncVectorEnv(fns)
    if vectorization_mode == "async":
        return gym.vector.AsyncVectorEnv(fns)
    raise ValueError(f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}")
