"""A contextual family built from ANY Gymnasium environment: a factory `context -> gymnasium.Env`.

    import gymnasium
    from hyperzero.envs import ContextFeature, GymnasiumFamily, register_family

    FAMILY = GymnasiumFamily(
        name="pendulum-g",
        features=(ContextFeature("g", "dynamics", "m/s^2", 10.0, bounds=(6.0, 14.0), limits=(1.0, 30.0),
                                 doc="gravity"),),
        factory=lambda context, render_mode=None: gymnasium.make("Pendulum-v1", g=context["g"],
                                                                 render_mode=render_mode),
        episode_steps=200)
    register_family(FAMILY)

What the pipeline sees (`hyperzero.envs.make(name, context)`, a `GymnasiumContextualEnv`):

* observations: the env's Box observation flattened to float32 (a Dict or other space is refused: wrap the env
  in `gymnasium.wrappers.FlattenObservation` inside the factory);
* actions: a float32 Box in [-1, 1]^A, the range every hyperzero policy and dataset uses. An action a is
  clipped to [-1, 1] and mapped affinely onto the env's Box [low, high]: `low + (a + 1) / 2 * (high - low)`,
  so -1 -> low, 0 -> the middle of the range (the do-nothing floor's action), +1 -> high. Every bound must be
  finite. Datasets store the [-1, 1] actions;
* episodes: truncated (`truncated=True`) after `episode_steps` steps; the env's own termination and
  truncation pass through. A dataset stores equal-length episodes, so an env that terminates early can train
  experts but not be collected (`record_episodes` says so);
* `reset(seed=s)` is passed to the env; the context is validated by the family's `ContextSpace` first, and
  the factory receives the full context dict (defaults filled in);
* rendering: the factory may take `render_mode=`; then `render_mode="rgb_array"` renders frames (videos, the
  explorer). `render_problem()` says why a family cannot render (no `render_mode` argument, or the env fails
  to render, e.g. Pendulum-v1 without pygame), and evaluation skips its videos, saying so.

The reward is the env's. `max_reward` / `min_reward` (per step) give the experts' quality gate its scale; without
`max_reward` the gate cannot judge an expert and passes it (saying so). See docs/own-environment.md.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hyperzero.envs.context import ContextFeature, ContextSpace
from hyperzero.envs.family import FamilyFacts


class RenderUnavailable(RuntimeError):
    """A family's env cannot render frames; the message names the family and why."""


@dataclass(frozen=True)
class GymnasiumFamily(FamilyFacts):
    name: str                                    # e.g. "pendulum-g"; hyperzero/<name>-v0 in Gymnasium's registry
    features: tuple[ContextFeature, ...]         # the context features (a ContextSpace is accepted too)
    factory: Callable[..., Any]                  # (context: dict[str, float][, render_mode=None]) -> gymnasium.Env
    episode_steps: int                           # steps of an episode (the time limit, a truncation)
    obs_dim: int | None = None                   # None: read from the env at the default context on registration
    act_dim: int | None = None                   # None: read from the env likewise
    doc: str = ""
    max_reward: float | None = None              # per-step reward ceiling (the quality gate's scale); None: unknown
    min_reward: float | None = None              # per-step reward floor (None: 0 when max_reward is given)

    kind = "gymnasium"                           # (a class attribute, not a field)

    def __post_init__(self):
        features = self.features
        if isinstance(features, ContextSpace):
            features = tuple(features.features.values())
        elif isinstance(features, ContextFeature):
            features = (features,)
        elif isinstance(features, Sequence) and not isinstance(features, (str, bytes)):
            features = tuple(features)
        object.__setattr__(self, "features", features)

    # --- facts ------------------------------------------------------------------------------------
    @property
    def accepts_render_mode(self) -> bool:
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):  # a builtin or C callable: try it
            return True
        return any(p.name == "render_mode" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    # --- building ---------------------------------------------------------------------------------
    def build(self, context: Mapping[str, float], render_mode: str | None = None):
        """The raw Gymnasium env of a (validated) context, as the factory makes it."""
        import gymnasium

        if render_mode is not None:
            if not self.accepts_render_mode:
                raise RenderUnavailable(f"family {self.name!r} cannot render: its factory takes no render_mode "
                                        f"argument (define it as `def factory(context, render_mode=None)` and pass "
                                        f"render_mode to gymnasium.make)")
            env = self.factory(dict(context), render_mode=render_mode)
        else:
            env = self.factory(dict(context))
        if not isinstance(env, gymnasium.Env):
            raise TypeError(f"family {self.name!r}: its factory returned {type(env).__name__}, not a gymnasium.Env")
        return env

    def spaces_of(self, env) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(obs_dim, act_dim, action low, action high) of a built env; a ValueError names what does not fit."""
        import gymnasium

        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gymnasium.spaces.Box):
            raise ValueError(f"family {self.name!r}: the env's observation space is {obs_space}, not a Box; wrap the "
                             f"env in gymnasium.wrappers.FlattenObservation inside the factory")
        if not isinstance(act_space, gymnasium.spaces.Box) or len(act_space.shape) != 1:
            raise ValueError(f"family {self.name!r}: the env's action space is {act_space}; hyperzero's policies "
                             f"need a 1-D continuous Box (discrete actions are not supported)")
        low = np.asarray(act_space.low, dtype=np.float64)
        high = np.asarray(act_space.high, dtype=np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
            raise ValueError(f"family {self.name!r}: the env's action bounds [{low.tolist()}, {high.tolist()}] must "
                             f"be finite with low < high: actions in [-1, 1] are mapped affinely onto them; wrap the "
                             f"env in gymnasium.wrappers.ClipAction or RescaleAction inside the factory")
        return int(np.prod(obs_space.shape)), int(act_space.shape[0]), low, high

    def probe(self) -> "GymnasiumFamily":
        """Check this family against its env at the default context and fill obs_dim / act_dim from it (in place:
        they are facts of the env, set only once every check passed). Returns the family. Raises ValueError (or
        the factory's own error) naming the family and what is wrong."""
        context = self.context_space.validate(None)
        try:
            env = self.build(context)
        except Exception as e:  # noqa: BLE001 - whatever the factory raises, name the family and the context
            raise RuntimeError(f"family {self.name!r}: its factory failed at the default context {context}: "
                               f"{type(e).__name__}: {e}") from e
        try:
            obs_dim, act_dim, _, _ = self.spaces_of(env)
            limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
        finally:
            env.close()
        for what, declared, found in (("obs_dim", self.obs_dim, obs_dim), ("act_dim", self.act_dim, act_dim)):
            if declared is not None and int(declared) != found:
                raise ValueError(f"family {self.name!r}: {what}={declared} but the env has {found}; leave {what} "
                                 f"out (it is read from the env) or correct it")
        if limit is not None and int(limit) < int(self.episode_steps):
            raise ValueError(f"family {self.name!r}: episode_steps={self.episode_steps} but the env's own time limit "
                             f"ends episodes after {limit} steps (env.spec.max_episode_steps); set episode_steps="
                             f"{limit}, or lift the env's limit with gymnasium.make(..., max_episode_steps=...)")
        object.__setattr__(self, "obs_dim", obs_dim)
        object.__setattr__(self, "act_dim", act_dim)
        return self

    def render_problem(self) -> str | None:
        """Why this family cannot render rgb_array frames (tried once per process at the default context), or None."""
        cached = _RENDER_PROBLEMS.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        problem = None
        if not self.accepts_render_mode:
            problem = "its factory takes no render_mode argument"
        else:
            env = None
            try:
                env = self.build(self.context_space.validate(None), render_mode="rgb_array")
                env.reset(seed=0)
                frame = env.render()
                if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[-1] == 3):
                    problem = f"env.render() returned {type(frame).__name__}, not an RGB frame [H, W, 3]"
            except Exception as e:  # noqa: BLE001 - whatever stops rendering, say it (e.g. pygame missing)
                problem = f"{type(e).__name__}: {e}"
            finally:
                if env is not None:
                    try:
                        env.close()
                    except Exception:  # noqa: BLE001
                        pass
        _RENDER_PROBLEMS[id(self)] = (self, problem)
        return problem

    def control_dt(self, env) -> float:
        """Seconds per step of a built env (its `dt`, else 1 / metadata render_fps, else 1/30)."""
        dt = getattr(env.unwrapped, "dt", None)
        if isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0:
            return float(dt)
        fps = (getattr(env, "metadata", None) or {}).get("render_fps")
        return 1.0 / float(fps) if fps else 1.0 / 30.0


_RENDER_PROBLEMS: dict[int, tuple[GymnasiumFamily, str | None]] = {}

__all__ = ["GymnasiumFamily", "RenderUnavailable"]
