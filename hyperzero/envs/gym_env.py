"""Gymnasium API over the contextual families: `ContextualEnv` (dm_control families) and
`GymnasiumContextualEnv` (families built from a Gymnasium env, hyperzero.envs.gymnasium_family)."""
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

    def __new__(cls, family=None, *args, **kwargs):
        # ContextualEnv(name) of a family built from a Gymnasium env is that family's GymnasiumContextualEnv
        if cls is ContextualEnv and family is not None:
            from hyperzero.envs import get_family

            fam = get_family(family) if isinstance(family, str) else family
            if getattr(fam, "kind", "dm_control") == "gymnasium":
                return super().__new__(GymnasiumContextualEnv)
        return super().__new__(cls)

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

    @property
    def control_dt(self) -> float:
        """Seconds of simulated time per step."""
        return float(self._env.control_timestep())

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


class GymnasiumContextualEnv(ContextualEnv):
    """One task of a family built from a Gymnasium env (`GymnasiumFamily`), with the same API as ContextualEnv.

    * observations: the env's Box observation flattened to float32;
    * actions: float32 Box in [-1, 1]; an action is clipped to [-1, 1] and mapped affinely onto the env's own
      action Box, `low + (a + 1) / 2 * (high - low)` (so 0 is the middle of the env's range);
    * `info["context"]` and `info["context_id"]` on reset and step (the env's own info is not passed on);
    * the episode is truncated after the family's `episode_steps` (the env's own ends pass through);
    * `reset(seed=s)` resets the env with seed s (the constructor's `seed` is used by the first reset without
      one); `reset(options={"context": {...}})` rebuilds the env for another context;
    * `render()` returns the env's rgb_array frame when made with `render_mode="rgb_array"` (RenderUnavailable,
      naming the family and why, when the env cannot render).
    """

    def __init__(self, family, context: Mapping[str, float] | None = None, seed: int | None = None,
                 value_at_margin: float = DEFAULT_VALUE_AT_MARGIN, allow_extrapolation: bool = False,
                 render_mode: str | None = None, width: int = 320, height: int = 240, camera_id: int = 0):
        from hyperzero.envs import get_family

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.family = get_family(family) if isinstance(family, str) else family
        self.render_mode = render_mode
        self._allow_extrapolation = allow_extrapolation
        self._pending_seed = seed
        self._env = None
        self._steps = 0
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
        self._build(context)
        inner = self._env.observation_space
        low = np.asarray(inner.low, np.float32).reshape(-1)
        high = np.asarray(inner.high, np.float32).reshape(-1)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.family.act_dim,), np.float32)
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": max(1, round(1.0 / self.control_dt))}

    def _build(self, context: Mapping[str, float] | None) -> None:
        context = self.family.context_space.validate(context, self._allow_extrapolation)
        env = self.family.build(context, render_mode=self.render_mode)
        try:
            obs_dim, act_dim, low, high = self.family.spaces_of(env)
            if (obs_dim, act_dim) != (self.family.obs_dim, self.family.act_dim):
                raise ValueError(f"family {self.family.name!r}: the env for context {context} has obs_dim={obs_dim}, "
                                 f"act_dim={act_dim}, but the family declares {self.family.obs_dim}, "
                                 f"{self.family.act_dim}; every context must give the same spaces")
        except Exception:
            env.close()
            raise
        if self._env is not None:
            self._env.close()
        self._env, self._low, self._span = env, low, high - low
        self._act_dtype = env.action_space.dtype
        self.context = context
        self.context_id = context_id(context)

    @property
    def dm_env(self):
        raise AttributeError(f"family {self.family.name!r} is built from a Gymnasium env, not dm_control: it has no "
                             f"dm_env; use .env for the Gymnasium env")

    @property
    def physics(self):
        raise AttributeError(f"family {self.family.name!r} is built from a Gymnasium env, not dm_control: it has no "
                             f"physics")

    @property
    def env(self):
        """The Gymnasium env the factory built."""
        return self._env

    @property
    def control_dt(self) -> float:
        return self.family.control_dt(self._env)

    def env_action(self, action) -> np.ndarray:
        """The env's action for a hyperzero action in [-1, 1] (clipped first)."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if a.shape != self._low.shape:
            raise ValueError(f"action has {a.size} values; family {self.family.name!r} has act_dim "
                             f"{self._low.size}")
        return (self._low + (a + 1.0) * 0.5 * self._span).astype(self._act_dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        if options and "context" in options:
            change = options["context"]
            self._build({**self.context, **change} if isinstance(change, Mapping) else change)
        if seed is None and self._pending_seed is not None:
            seed, self._pending_seed = self._pending_seed, None
        else:
            self._pending_seed = None
        obs, _ = self._env.reset(seed=seed)
        self._steps = 0
        return np.asarray(obs, dtype=np.float32).reshape(-1), self._info()

    def step(self, action):
        obs, reward, terminated, truncated, _ = self._env.step(self.env_action(action))
        self._steps += 1
        terminated = bool(terminated)
        truncated = bool(truncated) or (not terminated and self._steps >= self.family.episode_steps)
        return np.asarray(obs, dtype=np.float32).reshape(-1), float(reward), terminated, truncated, self._info()

    def render(self):
        from hyperzero.envs.gymnasium_family import RenderUnavailable

        if self.render_mode != "rgb_array":
            raise RenderUnavailable(f"family {self.family.name!r}: this env was made without render_mode='rgb_array'")
        try:
            frame = self._env.render()
        except Exception as e:  # noqa: BLE001 - name the family and the cause (e.g. pygame not installed)
            raise RenderUnavailable(f"family {self.family.name!r} cannot render: {type(e).__name__}: {e}") from e
        if frame is None:
            raise RenderUnavailable(f"family {self.family.name!r} cannot render: env.render() returned None")
        return np.asarray(frame)

    def close(self):
        if self._env is not None:
            self._env.close()


def make(family: str, context: Mapping[str, float] | None = None, seed: int | None = None, **kwargs) -> ContextualEnv:
    """A Gymnasium env for one task; same as `gymnasium.make("hyperzero/<family>-v0", context=...)` minus checkers.

    A dm_control family gives a `ContextualEnv`, a family built from a Gymnasium env a `GymnasiumContextualEnv`
    (same API: flat float32 observations, actions in [-1, 1], info["context"])."""
    from hyperzero.envs import get_family

    fam = get_family(family) if isinstance(family, str) else family
    if getattr(fam, "kind", "dm_control") == "gymnasium":
        return GymnasiumContextualEnv(fam, context=context, seed=seed, **kwargs)
    return ContextualEnv(fam.name, context=context, seed=seed, **kwargs)


def make_vector(family: str, contexts: Sequence[Mapping[str, float]], seed: int | None = None,
                vectorization_mode: str = "sync", **kwargs) -> gym.vector.VectorEnv:
    """A vector env in which sub-env i runs `contexts[i]` (seeded seed + i on the first reset)."""
    if not contexts:
        raise ValueError("make_vector needs at least one context")
    fns = [lambda ctx=ctx, i=i: make(family, ctx, seed=None if seed is None else seed + i, **kwargs)
           for i, ctx in enumerate(contexts)]
    if vectorization_mode == "sync":
        return gym.vector.SyncVectorEnv(fns)
    if vectorization_mode == "async":
        return gym.vector.AsyncVectorEnv(fns)
    raise ValueError(f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}")
