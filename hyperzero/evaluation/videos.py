"""Rollout strips and short videos of generated policies (the paper's Fig. 6).

The contexts default to the extremes of the run's first varied feature (e.g. speed -8 and +8, or
torso length 0.3 and 0.7), other varied features at their median; a preset may list its own.
Generated policies exist for any context, so these need not be dataset tasks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hyperzero.evaluation.rollout import numpy_policy, render_episode

VIDEO_FPS = 30
STRIP_FRAMES = 6


def default_video_contexts(dataset) -> list[dict[str, float]]:
    """Lowest and highest value of the first varied feature, the others at the median of the run's tasks."""
    names = list(dataset.context_names)
    values = {n: sorted({float(t.context[n]) for t in dataset.tasks}) for n in names}
    first = names[0]
    base = dict(dataset.tasks[0].context)
    for n in names[1:]:
        base[n] = values[n][len(values[n]) // 2]
    lo, hi = values[first][0], values[first][-1]
    return [{**base, first: lo}, {**base, first: hi}] if lo != hi else [{**base, first: lo}]


def _save_checked_video(frames, path: Path, save_video) -> Path:
    """Encode the video in a scratch folder, then write it like every other published file (atomically, with
    a `.sha256` sidecar, the umask's mode), so that a truncated or damaged video is found on a rerun."""
    import tempfile

    from hyperzero.utils.io import atomic_write_bytes

    with tempfile.TemporaryDirectory(prefix="hyperzero-video-") as scratch:
        encoded = save_video(frames, Path(scratch) / path.name, fps=VIDEO_FPS)
        return atomic_write_bytes(path, Path(encoded).read_bytes())


def render_videos(run_dir: str | Path, dataset, fits: Sequence[Any], config, load_fit: Callable[[Path], Any],
                  progress: bool = True) -> list[Path]:
    """mp4 per context in `eval/videos/` and one strip figure `eval/figures/rollout_strip.{png,pdf}`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from hyperzero.envs import context_id, get_family
    from hyperzero.envs.render import filmstrip, save_video
    from hyperzero.evaluation.figures import save_figure

    methods = [f.method for f in fits]
    method = config.video_method or ("hyperzero" if "hyperzero" in methods else methods[0])
    candidates = [f for f in fits if f.method == method]
    if not candidates:
        raise ValueError(f"video method {method!r} has no complete fit; choose one of {sorted(set(methods))}")
    fit = min(candidates, key=lambda f: f.seed)
    model = load_fit(fit.directory)
    space = get_family(dataset.family).context_space
    contexts = [space.validate(c, allow_extrapolation=True) for c in (config.video_contexts
                                                                      or default_video_contexts(dataset))]
    out_dir = Path(run_dir) / "eval"
    written, strips, labels = [], [], []
    for context in tqdm(contexts, desc=f"videos ({method})", unit="video", disable=not progress):
        act = numpy_policy(model.policy(context))
        frames, total = render_episode(dataset.family, context, act, seed=config.eval_seed, steps=config.video_steps)
        name = f"{method}_seed{fit.seed}_{context_id(context)}"
        written.append(_save_checked_video(frames, out_dir / "videos" / f"{name}.mp4", save_video))
        strips.append(filmstrip(frames, n=STRIP_FRAMES))
        shown = ", ".join(f"{n}={context[n]:g}" for n in dataset.context_names)
        labels.append(f"{shown}  (return over {len(frames) - 1} steps: {total:.0f})")
    fig, axes = plt.subplots(len(strips), 1, figsize=(12, 2.3 * len(strips)), squeeze=False)
    for ax, strip, label in zip(axes[:, 0], strips, labels):
        ax.imshow(np.asarray(strip))
        ax.set_title(f"{method} (split seed {fit.seed}): {label}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    written += save_figure(fig, out_dir / "figures" / "rollout_strip")
    return written
