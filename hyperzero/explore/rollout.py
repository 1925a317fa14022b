"""One clip for the explore page: generate the policy, roll it out, stream frames and rewards.

A clip is a generator of JSON-ready events, so the web layer only forwards them:

    start    the context, what each panel shows, Q̂(s0, π̂(s0)) for methods with a value head
    frame    one JPEG frame per panel (every `frame_every`-th control step) and the rewards since the last one
    clip     the clip is complete (its return and timing)
    done     episode return and realised discounted return after the whole episode (rest not rendered)
    superseded / error

Rendering is the slow part on a CPU (30-70 ms a frame with Mesa's llvmpipe at the models' default
quality). `FrameRenderer` keeps one camera per dynamics context and draws copies of the stepped
simulation's state with it, so the renderer's GL context (~0.3 s to create) is made once per body
shape, not once per slider move; its fast mode (no anti-aliasing, shadows or reflections) draws a
320x240 frame in about 6 ms.
"""
from __future__ import annotations

import base64
import io
import itertools
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

RENDER_CACHE_SIZE = 6   # cameras kept (one per dynamics context: body shape, gravity, friction)
MAX_CLIENTS = 512       # supersession counters kept (the oldest clients are forgotten)


class FrameRenderer:
    """Renders physics states of one family with a reusable camera per dynamics context.

    `render(context, physics)` copies `physics`' state (qpos, qvel, act) into a cached Physics of
    the same model and renders it with the family's camera 0, as `ContextualEnv.render()` does.
    `full_quality=False` turns off multisample anti-aliasing, shadows and reflections (about 5x
    faster on a CPU renderer); `True` draws what `ContextualEnv.render()` draws.

    dm_control's EGL contexts belong to the thread that made them current, and web requests run on
    any worker thread, so every GL call (create, render, free) happens on one thread owned here.
    `close()` frees the contexts on that thread (at interpreter exit it would be too late).
    """

    def __init__(self, family, width: int = 320, height: int = 240, full_quality: bool = False,
                 cache_size: int = RENDER_CACHE_SIZE):
        from concurrent.futures import ThreadPoolExecutor

        self.family, self.width, self.height, self.full_quality = family, width, height, full_quality
        self.env_kwargs: dict[str, Any] = {}  # the envs step without rendering; frames come from copies of the state
        self.dynamics = [n for n, f in family.context_space.features.items() if f.kind == "dynamics"]
        self._cache: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()  # touched on the GL thread only
        self._cache_size = cache_size
        self._gl = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyperzero-render")
        self._closed = False

    def _key(self, context: Mapping[str, float]) -> tuple:
        return tuple((n, float(context[n])) for n in self.dynamics if n in context)

    def _entry(self, context: Mapping[str, float]):
        key = self._key(context)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        from dm_control.mujoco.engine import Camera
        from dm_control.mujoco.wrapper.mjbindings import enums

        physics = self.family.make_physics(dict(key))
        if not self.full_quality:
            physics.model.vis.quality.offsamples = 0  # before the GL context exists: no multisampled buffer
        camera = Camera(physics, height=self.height, width=self.width, camera_id=0)
        if not self.full_quality:
            camera.scene.flags[enums.mjtRndFlag.mjRND_SHADOW] = 0
            camera.scene.flags[enums.mjtRndFlag.mjRND_REFLECTION] = 0
        self._cache[key] = (physics, camera)
        while len(self._cache) > self._cache_size:
            self._free(*self._cache.popitem(last=False)[1])
        return self._cache[key]

    @staticmethod
    def _free(physics, camera) -> None:
        del camera
        physics.free()

    def _render(self, context: Mapping[str, float], physics) -> np.ndarray:
        own, camera = self._entry(context)
        own.set_state(physics.get_state())
        own.forward()
        return camera.render()

    def render(self, context: Mapping[str, float], physics) -> np.ndarray:
        """[H, W, 3] uint8 frame of `physics`' current state; `context` names its model.
        The caller must not step `physics` meanwhile (the call returns when the frame is drawn)."""
        if self._closed:
            raise RuntimeError("this FrameRenderer is closed")
        return self._gl.submit(self._render, context, physics).result()

    def frame(self, context: Mapping[str, float], env) -> np.ndarray:
        """The frame of a ContextualEnv's current state."""
        return self.render(context, env.physics)

    def _close(self) -> None:
        while self._cache:
            self._free(*self._cache.popitem()[1])

    def close(self) -> None:
        """Free every GL context (on the GL thread) and stop that thread."""
        if not self._closed:
            self._closed = True
            self._gl.submit(self._close).result()
            self._gl.shutdown()

    def __enter__(self) -> "FrameRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EnvFrameRenderer:
    """Frames of a family built from a Gymnasium env (GymnasiumFamily): the env itself renders (it is made with
    render_mode="rgb_array"), each frame scaled to width x height. Same interface as FrameRenderer."""

    env_kwargs = {"render_mode": "rgb_array"}

    def __init__(self, family, width: int = 320, height: int = 240, full_quality: bool = False):
        self.family, self.width, self.height = family, width, height

    def frame(self, context: Mapping[str, float], env) -> np.ndarray:
        frame = np.asarray(env.render())
        if frame.shape[:2] != (self.height, self.width):
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((self.width, self.height)))
        return frame

    def close(self) -> None:
        pass

    def __enter__(self) -> "EnvFrameRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_renderer(family, width: int = 320, height: int = 240, full_quality: bool = False):
    """The renderer of a family's frames: FrameRenderer (dm_control) or EnvFrameRenderer (a Gymnasium env).
    A family that cannot render is refused with a ValueError that names it and why."""
    problem = family.render_problem()
    if problem is not None:
        raise ValueError(f"family {family.name!r} cannot render frames ({problem}); the explore page shows each "
                         f"rollout as frames, so it needs a family that renders (for a Gymnasium env: a factory that "
                         f"takes render_mode and an env that renders rgb_array). Evaluation and the report work "
                         f"without rendering")
    if getattr(family, "kind", "dm_control") == "gymnasium":
        return EnvFrameRenderer(family, width, height, full_quality)
    return FrameRenderer(family, width, height, full_quality)


def jpeg_base64(frame: np.ndarray, quality: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame)).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Supersession:
    """A per-client generation counter: starting a clip supersedes the client's earlier ones."""

    def __init__(self, max_clients: int = MAX_CLIENTS):
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_clients

    def begin(self, client: str) -> Callable[[], bool]:
        """Register a new clip of `client`; returns `is_current()` (False once a newer clip began)."""
        with self._lock:
            generation = self._latest.get(client, 0) + 1
            self._latest[client] = generation
            self._latest.move_to_end(client)
            while len(self._latest) > self._max:
                self._latest.popitem(last=False)
        return lambda: self._latest.get(client) == generation


@dataclass
class Panel:
    """One method shown on the page: its generated policy for the clip's context."""

    method: str
    seed: int
    act: Callable[[np.ndarray], np.ndarray]   # obs [S] -> action [A]
    q: Callable[[np.ndarray, np.ndarray], float] | None  # Q̂(s, a), where the method has a value head
    meta: bool = False


def make_panel(trained, method: str, seed: int, context: Mapping[str, float], meta: bool = False) -> Panel:
    """Generate the zero-shot policy of `trained` (a `load_fit` model) for `context`."""
    import torch

    from hyperzero.evaluation.rollout import numpy_policy

    policy = trained.policy(dict(context))
    has_q = bool(getattr(policy, "has_q", False)) and hasattr(policy, "q")
    act_batch = numpy_policy(policy)  # any method's policy (torch or numpy in/out) as numpy [B,S] -> [B,A]

    def act(obs: np.ndarray) -> np.ndarray:
        return act_batch(np.asarray(obs, dtype=np.float32)[None])[0]

    @torch.no_grad()
    def q(obs: np.ndarray, action: np.ndarray) -> float:
        value = policy.q(torch.as_tensor(np.asarray(obs, np.float32)[None]),
                         torch.as_tensor(np.asarray(action, np.float32)[None]))
        return float(torch.as_tensor(value).reshape(-1)[0])

    return Panel(method, seed, act, q if has_q else None, meta)


def auto_frame_every(control_dt: float, clip_steps: int, fps: float, max_frames: int) -> int:
    """Real-time playback at about `fps`, but never more than `max_frames` frames per clip."""
    realtime = max(1, round(1.0 / (fps * control_dt)))
    return max(realtime, math.ceil(clip_steps / max_frames))


def discounted(rewards: Sequence[float], gamma: float) -> float:
    out = 0.0
    for r in reversed(list(rewards)):
        out = float(r) + gamma * out
    return out


def clip_events(family_name: str, context: Mapping[str, float], panels: Sequence[Panel], renderer: FrameRenderer,
                episode_seed: int, clip_steps: int, episode_steps: int, gamma: float,
                frame_every: int | None = None, fps: float = 30.0, max_frames: int = 90, jpeg_quality: int = 80,
                is_current: Callable[[], bool] = lambda: True, started: float | None = None,
                extra_start: Mapping[str, Any] | None = None,
                keep_frame: Callable[[int, str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Roll every panel's policy out from the same initial state (`episode_seed`) in lockstep and yield
    the events listed in the module docstring. Stops with `superseded` as soon as `is_current()` is False."""
    from hyperzero.envs import make

    started = time.perf_counter() if started is None else started
    env_kwargs = getattr(renderer, "env_kwargs", {})
    envs = [make(family_name, context, seed=episode_seed, allow_extrapolation=True, **env_kwargs) for _ in panels]
    try:
        obs = [env.reset(seed=episode_seed)[0] for env in envs]
        dt = float(envs[0].control_dt)
        clip_steps = min(clip_steps, episode_steps)
        every = frame_every or auto_frame_every(dt, clip_steps, fps, max_frames)
        first_actions = [p.act(o) for p, o in zip(panels, obs)]
        start = {
            "type": "start", "context": dict(context), "episode_seed": episode_seed, "clip_steps": clip_steps,
            "episode_steps": episode_steps, "frame_every": every, "frames": clip_steps // every + 1,
            "playback_fps": 1.0 / (dt * every), "control_dt": dt, "gamma": gamma,
            "panels": [{"method": p.method, "seed": p.seed, "meta": p.meta, "has_q": p.q is not None,
                        "q_hat": None if p.q is None else p.q(o, a)}
                       for p, o, a in zip(panels, obs, first_actions)],
            **(extra_start or {}),
        }
        yield start
        rewards: list[list[float]] = [[] for _ in panels]
        sent = [0 for _ in panels]
        running = [True for _ in panels]
        first_frame_s = None

        def frame(i: int, t: int) -> dict[str, Any]:
            nonlocal first_frame_s
            image = jpeg_base64(renderer.frame(context, envs[i]), jpeg_quality)
            if keep_frame is not None:
                keep_frame(i, image)
            new, sent[i] = rewards[i][sent[i]:], len(rewards[i])
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - started
            return {"type": "frame", "panel": i, "t": t, "jpeg": image, "rewards": new}

        def clip_event() -> dict[str, Any]:
            return {"type": "clip", "clip_returns": [float(sum(r[:clip_steps])) for r in rewards],
                    "first_frame_s": first_frame_s, "clip_s": time.perf_counter() - started}

        for i in range(len(panels)):
            yield frame(i, 0)
        actions = first_actions
        for t in itertools.count(1):
            if t > episode_steps or not any(running):
                break
            if not is_current():
                yield {"type": "superseded"}
                return
            for i, env in enumerate(envs):
                if not running[i]:
                    continue
                obs[i], reward, terminated, truncated, _ = env.step(actions[i])
                rewards[i].append(float(reward))
                if terminated or truncated:
                    running[i] = False
            if t <= clip_steps and t % every == 0:
                for i in range(len(panels)):
                    yield frame(i, t)
            if t == clip_steps or (t < clip_steps and not any(running)):  # an episode may end before the clip
                yield clip_event()
            actions = [p.act(o) if running[i] else None for i, (p, o) in enumerate(zip(panels, obs))]
        yield {"type": "done", "total_s": time.perf_counter() - started,
               "panels": [{"episode_return": float(sum(r)), "steps": len(r),
                           "discounted_return": discounted(r, gamma), "rewards": r[sent[i]:]}
                          for i, r in enumerate(rewards)]}
    finally:
        for env in envs:
            env.close()
