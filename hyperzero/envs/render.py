"""Headless frames and videos (MUJOCO_GL=egl by default, set when `hyperzero` is imported)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write frames [H, W, 3] uint8 to .mp4 (H.264, bundled ffmpeg) or .gif, atomically."""
    path = Path(path)
    if not len(frames):
        raise ValueError(f"no frames to write to {path}")
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"video path {path} must end in .mp4 or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".mp4":
            import imageio.v2 as imageio

            imageio.mimwrite(tmp, list(frames), fps=fps, codec="libx264", macro_block_size=1)
        else:
            from PIL import Image

            images = [Image.fromarray(np.asarray(f)) for f in frames]
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def rollout_frames(env, policy: Callable[[np.ndarray], np.ndarray], steps: int, seed: int | None = None,
                   every: int = 1) -> tuple[list[np.ndarray], float]:
    """Roll `policy` in a ContextualEnv for `steps` steps, rendering every `every`-th; returns (frames, return)."""
    obs, _ = env.reset(seed=seed)
    frames, total = [env.render()], 0.0
    for t in range(steps):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += reward
        if (t + 1) % every == 0:
            frames.append(env.render())
        if terminated or truncated:
            break
    return frames, total


def filmstrip(frames: Sequence[np.ndarray], n: int = 6) -> np.ndarray:
    """`n` evenly spaced frames side by side, for a still 'rollout strip' figure."""
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return np.concatenate([frames[i] for i in idx], axis=1)
