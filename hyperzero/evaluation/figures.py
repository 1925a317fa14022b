"""The paper's figures, redrawn from `results.csv` (the authors' plotting code was never released).

* `return_vs_context`: Figs. 3 and 4. Return against the one varied feature (desired speed or a
  length), one curve per method: the mean over the split seeds in which that task was held out,
  with a ±1 std band over those seeds; the expert's return on the same episode seeds on top.
* `heatmaps`: Fig. 5 for reward×dynamics sweeps. One panel per method over (feature 1, feature 2)
  plus one panel of the difference to the expert. Cells where no seed held the task out stay blank
  (no smoothing: the paper smoothed its surfaces "for visual clarity", which hides where data is).
* `ablation`: Fig. 7, HyperZero vs without TD vs without Q (curves for 1-D sweeps, bars otherwise).
* `summary_bars`: normalised held-out return per method, mean ± std over split seeds.

Every figure is written as PNG and PDF with the Agg backend (no display needed).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hyperzero.evaluation.metrics import ResultRow, per_task_curve, summarize  # noqa: E402
from hyperzero.utils.io import atomic_write_bytes  # noqa: E402

ABLATION_METHODS = ("hyperzero", "hyperzero_without_td", "hyperzero_without_q")
EXPERT_STYLE = dict(color="black", linestyle="--", marker="o", markersize=3, linewidth=1.5, label="expert (TD3)")


def method_order(rows: Sequence[ResultRow]) -> list[str]:
    preferred = ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa",
                 "mlp_uvfa_td", "maml", "pearl", "context_blind"]
    present = list(dict.fromkeys(r.method for r in rows))
    return sorted(present, key=lambda m: (preferred.index(m.split("@")[0]) if m.split("@")[0] in preferred
                                          else len(preferred), m))


def save_figure(fig, path_stem: str | Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically; returns both paths."""
    import io

    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130, bbox_inches="tight")
        paths.append(atomic_write_bytes(Path(f"{path_stem}.{ext}"), buf.getvalue()))
    plt.close(fig)
    return paths


def _axis_label(name: str) -> str:
    return {"speed": "desired speed (m/s; sign = direction)", "torso_length": "torso length",
            "finger_length": "finger length"}.get(name, name)


def _plot_curves(ax, rows: Sequence[ResultRow], methods: Sequence[str], feature: str) -> None:
    expert_points: dict[str, tuple[float, float]] = {}
    for method in methods:
        points = sorted(per_task_curve(rows, method), key=lambda p: p.context[feature])
        if not points:
            continue
        x = np.array([p.context[feature] for p in points])
        mean = np.array([p.mean for p in points])
        std = np.array([p.std for p in points])
        line, = ax.plot(x, mean, marker="o", markersize=3, label=method)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        for p in points:
            expert_points[p.task_id] = (p.context[feature], p.expert_return)
    if expert_points:
        ex = sorted(expert_points.values())
        ax.plot([e[0] for e in ex], [e[1] for e in ex], **EXPERT_STYLE)
    ax.set_xlabel(_axis_label(feature))
    ax.set_ylabel("episode return (held-out tasks)")
    ax.grid(alpha=0.3)


def return_vs_context(rows: Sequence[ResultRow], feature: str, out_stem: str | Path, title: str = "",
                      methods: Sequence[str] | None = None) -> list[Path]:
    methods = list(methods) if methods is not None else method_order(rows)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _plot_curves(ax, rows, methods, feature)
    ax.set_title(title or f"Zero-shot return vs {feature} (mean ± std over seeds holding the task out)")
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out_stem)


def _grid_values(rows: Sequence[ResultRow], features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array(sorted({r.context[features[0]] for r in rows}))
    ys = np.array(sorted({r.context[features[1]] for r in rows}))
    return xs, ys


def _cell_edges(values: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[1:] + values[:-1]) / 2
    return np.concatenate([[values[0] - (mid[0] - values[0])], mid, [values[-1] + (values[-1] - mid[-1])]])


def heatmaps(rows: Sequence[ResultRow], features: Sequence[str], out_stem: str | Path,
             methods: Sequence[str] | None = None) -> list[Path]:
    """Per method: held-out return over the 2-D grid, and (second row) method minus expert."""
    if len(features) != 2:
        raise ValueError(f"heatmaps need exactly two context features, got {list(features)}")
    methods = list(methods) if methods is not None else method_order(rows)
    xs, ys = _grid_values(rows, features)
    xe, ye = _cell_edges(xs), _cell_edges(ys)
    fig, axes = plt.subplots(2, len(methods), figsize=(3.3 * len(methods) + 0.5, 6), squeeze=False)
    vmax = max([r.expert_return for r in rows] + [r.return_mean for r in rows] + [1.0])
    for col, method in enumerate(methods):
        ret = np.full((len(ys), len(xs)), np.nan)
        diff = np.full((len(ys), len(xs)), np.nan)
        for p in per_task_curve(rows, method):
            i = int(np.searchsorted(ys, p.context[features[1]]))
            j = int(np.searchsorted(xs, p.context[features[0]]))
            ret[i, j] = p.mean
            diff[i, j] = p.mean - p.expert_return
        m1 = axes[0, col].pcolormesh(xe, ye, np.ma.masked_invalid(ret), cmap="viridis", vmin=0, vmax=vmax)
        lim = max(1.0, float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0)
        m2 = axes[1, col].pcolormesh(xe, ye, np.ma.masked_invalid(diff), cmap="RdBu", vmin=-lim, vmax=lim)
        axes[0, col].set_title(method, fontsize=9)
        axes[1, col].set_title(f"{method} − expert", fontsize=9)
        fig.colorbar(m1, ax=axes[0, col], fraction=0.046)
        fig.colorbar(m2, ax=axes[1, col], fraction=0.046)
        for row in (0, 1):
            axes[row, col].set_facecolor("#dddddd")  # blank = never held out
            axes[row, col].set_xlabel(_axis_label(features[0]), fontsize=8)
            axes[row, col].set_ylabel(_axis_label(features[1]), fontsize=8)
    fig.suptitle("Held-out return over the context grid (grey: task never held out)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def summary_bars(rows: Sequence[ResultRow], out_stem: str | Path, methods: Sequence[str] | None = None,
                 title: str = "") -> list[Path]:
    summary = {s.method: s for s in summarize(rows)}
    methods = [m for m in (methods if methods is not None else method_order(rows)) if m in summary]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(methods) + 1.5), 3.8))
    means = [summary[m].normalized_mean for m in methods]
    stds = [summary[m].normalized_std for m in methods]
    ax.bar(range(len(methods)), [0 if math.isnan(v) else v for v in means], yerr=stds, capsize=3, color="tab:blue")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="expert = 1")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("return / expert return (held-out)")
    ax.set_title(title or "Held-out normalised return, mean ± std over split seeds", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_stem)


def ablation(rows: Sequence[ResultRow], context_names: Sequence[str], out_stem: str | Path) -> list[Path] | None:
    methods = [m for m in ABLATION_METHODS if any(r.method == m for r in rows)]
    if len(methods) < 2:
        return None
    sub = [r for r in rows if r.method in methods]
    if len(context_names) == 1:
        return return_vs_context(sub, context_names[0], out_stem, methods=methods,
                                 title="Ablation: generating Q and the TD loss (held-out tasks)")
    return summary_bars(sub, out_stem, methods=methods, title="Ablation: generating Q and the TD loss")


def make_all_figures(rows: Sequence[ResultRow], context_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Every results figure that fits this sweep; returns the written paths (PNG and PDF)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise ValueError("no result rows to plot; run the evaluation first")
    written: list[Path] = []
    zero_shot = [r for r in rows if "@" not in r.method]
    if len(context_names) == 1:
        written += return_vs_context(zero_shot, context_names[0], out_dir / f"return_vs_{context_names[0]}")
    elif len(context_names) == 2:
        written += heatmaps(zero_shot, context_names, out_dir / "heatmaps")
    written += summary_bars(rows, out_dir / "summary_normalized")
    abl = ablation(zero_shot, context_names, out_dir / "ablation")
    if abl:
        written += abl
    return written
