"""The paper's figures, redrawn from `results.csv` (the authors' plotting code was never released).

* `return_vs_context`: Figs. 3 and 4. Return against the one varied feature (desired speed or a
  length), one curve per method: the mean over the split seeds in which that task was held out,
  with a ±1 std band over those seeds; the expert's return on the same episode seeds on top and
  the do-nothing floor below.
* `heatmaps`: Fig. 5 for reward×dynamics sweeps. One panel per method over (feature 1, feature 2)
  plus one panel of the difference to the expert. Cells where no seed held the task out stay blank
  (no smoothing: the paper smoothed its surfaces "for visual clarity", which hides where data is).
* `surfaces`: the same grid as 3-D surfaces, one panel per method, on shared colour and z scales.
  Facets join only neighbouring measured grid points (never across a cell that was not held out),
  every measured point is marked, the expert's return sits above or below it, and grid points never
  held out are crosses on the floor.
* `ablation`: Fig. 7, HyperZero vs without TD vs without Q (curves for 1-D sweeps, bars otherwise).
* `summary_intervals`: per method, the IQM of the floor-corrected score and the probability of
  improvement over the strongest baseline, each with its 95 % stratified-bootstrap interval.
* `learning_curves`: train action MSE, validation zero-shot action MSE and validation return against
  the gradient step, per method (mean over split seeds): did every method's curve flatten?

Every figure is written as PNG and PDF with the Agg backend (no display needed). Only held-out rows
(role "test") are plotted: the cloning rows of training tasks (role "train") are left out of every figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402

from hyperzero.evaluation.metrics import ResultRow, per_task_curve, test_rows  # noqa: E402
from hyperzero.utils.io import atomic_write_bytes  # noqa: E402

ABLATION_METHODS = ("hyperzero", "hyperzero_without_td", "hyperzero_without_q")
EXPERT_STYLE = dict(color="black", linestyle="--", marker="o", markersize=3, linewidth=1.5, label="expert (TD3)")
FLOOR_STYLE = dict(color="grey", linestyle=":", marker="x", markersize=3, linewidth=1.2, label="do nothing (a = 0)")


def method_order(rows: Sequence[ResultRow]) -> list[str]:
    return order_methods(r.method for r in rows)


def order_methods(names) -> list[str]:
    """The paper's order (HyperZero, its ablations, baselines), unknown names last; duplicates dropped."""
    preferred = ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa",
                 "mlp_uvfa_td", "maml", "pearl", "context_blind"]
    present = list(dict.fromkeys(names))
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


def _axis_label(name: str, family: str | None = None) -> str:
    """A context feature's axis label, with the unit its family declares (finger spin is rad/s, not m/s)."""
    words = "desired speed" if name == "speed" else name.replace("_", " ")
    feature = None
    if family is not None:
        from hyperzero.envs import get_family

        feature = next((f for f in get_family(family).features if f.name == name), None)
    if feature is None:
        return f"{words} (sign = direction)" if name == "speed" else words
    return f"{words} ({feature.unit}; sign = direction)" if feature.nonzero else f"{words} ({feature.unit})"


def _plot_curves(ax, rows: Sequence[ResultRow], methods: Sequence[str], feature: str,
                 family: str | None = None) -> None:
    expert_points: dict[str, tuple[float, float]] = {}
    floor_points: dict[str, tuple[float, float]] = {}
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
            floor_points[p.task_id] = (p.context[feature], p.floor_return)
    for points_, style in ((expert_points, EXPERT_STYLE), (floor_points, FLOOR_STYLE)):
        ref = sorted(v for v in points_.values() if np.isfinite(v[1]))
        if ref:
            ax.plot([e[0] for e in ref], [e[1] for e in ref], **style)
    ax.set_xlabel(_axis_label(feature, family))
    ax.set_ylabel("episode return (held-out tasks)")
    ax.grid(alpha=0.3)


def return_vs_context(rows: Sequence[ResultRow], feature: str, out_stem: str | Path, title: str = "",
                      methods: Sequence[str] | None = None, family: str | None = None) -> list[Path]:
    methods = list(methods) if methods is not None else method_order(rows)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _plot_curves(ax, rows, methods, feature, family)
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


def _on_grid(rows: Sequence[ResultRow], method: str, features: Sequence[str], xs: np.ndarray,
             ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A method's mean held-out return and the expert's return per grid cell [len(ys), len(xs)] (NaN: never held out)."""
    ret = np.full((len(ys), len(xs)), np.nan)
    expert = np.full((len(ys), len(xs)), np.nan)
    for p in per_task_curve(rows, method):
        i = int(np.searchsorted(ys, p.context[features[1]]))
        j = int(np.searchsorted(xs, p.context[features[0]]))
        ret[i, j] = p.mean
        expert[i, j] = p.expert_return
    return ret, expert


def heatmaps(rows: Sequence[ResultRow], features: Sequence[str], out_stem: str | Path,
             methods: Sequence[str] | None = None, family: str | None = None) -> list[Path]:
    """Per method: held-out return over the 2-D grid, and (second row) method minus expert."""
    if len(features) != 2:
        raise ValueError(f"heatmaps need exactly two context features, got {list(features)}")
    rows = test_rows(rows)
    methods = list(methods) if methods is not None else method_order(rows)
    xs, ys = _grid_values(rows, features)
    xe, ye = _cell_edges(xs), _cell_edges(ys)
    fig, axes = plt.subplots(2, len(methods), figsize=(3.3 * len(methods) + 0.5, 6), squeeze=False)
    vmax = max([r.expert_return for r in rows] + [r.return_mean for r in rows] + [1.0])
    for col, method in enumerate(methods):
        ret, expert = _on_grid(rows, method, features, xs, ys)
        diff = ret - expert
        m1 = axes[0, col].pcolormesh(xe, ye, np.ma.masked_invalid(ret), cmap="viridis", vmin=0, vmax=vmax)
        lim = max(1.0, float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0)
        m2 = axes[1, col].pcolormesh(xe, ye, np.ma.masked_invalid(diff), cmap="RdBu", vmin=-lim, vmax=lim)
        axes[0, col].set_title(method, fontsize=9)
        axes[1, col].set_title(f"{method} − expert", fontsize=9)
        fig.colorbar(m1, ax=axes[0, col], fraction=0.046)
        fig.colorbar(m2, ax=axes[1, col], fraction=0.046)
        for row in (0, 1):
            axes[row, col].set_facecolor("#dddddd")  # blank = never held out
            axes[row, col].set_xlabel(_axis_label(features[0], family), fontsize=8)
            axes[row, col].set_ylabel(_axis_label(features[1], family), fontsize=8)
    fig.suptitle("Held-out return over the context grid (grey: task never held out)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def _grid_triangles(measured: np.ndarray) -> list[tuple[tuple[int, int], ...]]:
    """Triangles over (row, column) grid indices joining measured points of one grid cell only: a cell with
    all four corners gives two triangles, one with three gives one; gaps are never bridged."""
    triangles = []
    for i in range(measured.shape[0] - 1):
        for j in range(measured.shape[1] - 1):
            corners = [(i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)]
            present = [c for c in corners if measured[c]]
            if len(present) == 4:
                triangles += [(corners[0], corners[1], corners[2]), (corners[0], corners[2], corners[3])]
            elif len(present) == 3:
                triangles.append(tuple(present))
    return triangles


def surfaces(rows: Sequence[ResultRow], features: Sequence[str], out_stem: str | Path,
             methods: Sequence[str] | None = None, family: str | None = None) -> list[Path]:
    """Per method: held-out return as an unsmoothed 3-D surface over the 2-D grid, the expert's return on the
    same tasks, and the grid points never held out; colour and z scales are shared so panels compare."""
    if len(features) != 2:
        raise ValueError(f"surfaces need exactly two context features, got {list(features)}")
    rows = test_rows(rows)
    methods = list(methods) if methods is not None else method_order(rows)
    xs, ys = _grid_values(rows, features)
    grid_x, grid_y = np.meshgrid(xs, ys)
    # The heat maps' colour scale, widened only if a return is negative, so both figures read alike.
    finite = [v for r in rows for v in (r.expert_return, r.return_mean) if np.isfinite(v)]
    z_high, z_low = max(finite + [1.0]), min(finite + [0.0])
    norm = matplotlib.colors.Normalize(vmin=z_low, vmax=z_high)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods) + 1.0, 4.2), squeeze=False,
                             subplot_kw=dict(projection="3d"))
    for col, method in enumerate(methods):
        ax = axes[0, col]
        ret, expert = _on_grid(rows, method, features, xs, ys)
        measured = np.isfinite(ret)
        triangles = _grid_triangles(measured)
        if triangles:
            raveled = [[i * len(xs) + j for i, j in triangle] for triangle in triangles]
            ax.plot_trisurf(grid_x.ravel(), grid_y.ravel(), raveled,
                            np.nan_to_num(ret).ravel(), cmap="viridis", norm=norm, alpha=0.8,
                            edgecolor="none", linewidth=0)
        ax.scatter(grid_x[measured], grid_y[measured], ret[measured], c=ret[measured], cmap="viridis", norm=norm,
                   edgecolors="black", linewidths=0.4, s=18, depthshade=False)
        has_expert = measured & np.isfinite(expert)
        for x, y, z_method, z_expert in zip(grid_x[has_expert], grid_y[has_expert], ret[has_expert],
                                            expert[has_expert]):
            ax.plot([x, x], [y, y], [z_method, z_expert], color="black", linewidth=0.5, alpha=0.5)
        ax.scatter(grid_x[has_expert], grid_y[has_expert], expert[has_expert], facecolors="none",
                   edgecolors="black", marker="o", s=18, depthshade=False)
        if (~measured).any():
            ax.scatter(grid_x[~measured], grid_y[~measured], np.full(int((~measured).sum()), z_low), color="grey",
                       marker="x", s=18, depthshade=False)
        ax.set_zlim(z_low, z_high)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel(_axis_label(features[0], family), fontsize=7)
        ax.set_ylabel(_axis_label(features[1], family), fontsize=7)
        ax.set_zlabel("return", fontsize=7)
        ax.tick_params(labelsize=6)
    # One legend for the figure: a panel may lack some of the marks (e.g. no cell left unheld).
    legend_marks = [Line2D([], [], linestyle="none", marker="o", markerfacecolor="tab:green", markeredgecolor="black",
                           label="method, held out (mean over seeds)"),
                    Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor="black",
                           label="expert (TD3)"),
                    Line2D([], [], linestyle="none", marker="x", color="grey", label="never held out")]
    fig.legend(handles=legend_marks, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=list(axes[0]), fraction=0.02,
                 pad=0.06, label="held-out return")
    fig.suptitle("Held-out return over the context grid, unsmoothed (lines: gap to the expert)", fontsize=10)
    return save_figure(fig, out_stem)


def summary_intervals(stats: Sequence, out_stem: str | Path, methods: Sequence[str] | None = None,
                      title: str = "") -> list[Path]:
    """IQM of the floor-corrected score and P(better than the strongest baseline), with 95 % intervals."""
    by_method = {s.method: s for s in stats}
    methods = [m for m in (methods if methods is not None else list(by_method)) if m in by_method]
    fig, axes = plt.subplots(1, 2, figsize=(11, max(2.5, 0.45 * len(methods) + 1.2)), sharey=True)
    y = np.arange(len(methods))[::-1]
    panels = ((axes[0], "iqm_score", "IQM of (R - R_floor) / (R_expert - R_floor)", (0.0, 1.0)),
              (axes[1], "poi", "P(method > baseline)", (0.5,)))
    for ax, key, label, refs in panels:
        point = np.array([getattr(by_method[m], key) for m in methods], dtype=float)
        lo = np.array([getattr(by_method[m], f"{key}_lo") for m in methods], dtype=float)
        hi = np.array([getattr(by_method[m], f"{key}_hi") for m in methods], dtype=float)
        ok = np.isfinite(point)
        err = np.vstack([np.nan_to_num(point - lo), np.nan_to_num(hi - point)])
        ax.errorbar(point[ok], y[ok], xerr=err[:, ok], fmt="o", color="tab:blue", capsize=4)
        for r in refs:
            ax.axvline(r, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    baselines = sorted({by_method[m].baseline for m in methods if by_method[m].baseline})
    axes[1].set_title(f"baseline: {', '.join(baselines) or 'none'}", fontsize=9)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(methods, fontsize=8)
    fig.suptitle(title or "Held-out tasks, all (split seed, task) pairs: point estimate and 95 % stratified-bootstrap "
                 "interval", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def read_progress(path: Path) -> dict[str, list[tuple[int, float]]]:
    import csv

    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value not in (None, ""):
                    series.setdefault(key, []).append((int(float(row["step"])), float(value)))
    return series


CURVE_KEYS = (("train/action_loss", "train action MSE"), ("val/zero_shot_action_loss", "val zero-shot action MSE"),
              ("val/return", "val return (rollouts)"))


def method_curves(run_dir: str | Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """method -> curve key -> (steps, mean over split seeds) from `fits/<method>/seed_<k>/progress.csv`."""
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for method_dir in sorted(p for p in (Path(run_dir) / "fits").glob("*") if p.is_dir()):
        per_key: dict[str, dict[int, list[float]]] = {}
        for progress in sorted(method_dir.glob("seed_*/progress.csv")):
            for key, points in read_progress(progress).items():
                for step, value in points:
                    per_key.setdefault(key, {}).setdefault(step, []).append(value)
        if per_key:
            out[method_dir.name] = {k: (np.array(sorted(v)), np.array([np.mean(v[s]) for s in sorted(v)]))
                                    for k, v in per_key.items()}
    return out


def learning_curves(run_dir: str | Path, out_stem: str | Path) -> list[Path] | None:
    curves = method_curves(run_dir)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(5 * len(CURVE_KEYS), 3.8))
    for ax, (key, label) in zip(axes, CURVE_KEYS):
        for method in order_methods(curves):
            if key in curves[method]:
                steps, values = curves[method][key]
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=method)
        ax.set_xlabel("gradient step")
        ax.set_title(label, fontsize=9)
        if "loss" in key:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Learning curves, mean over split seeds (validation on validation tasks only)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def ablation(rows: Sequence[ResultRow], context_names: Sequence[str], out_stem: str | Path,
             stats: Sequence | None = None, family: str | None = None) -> list[Path] | None:
    rows = test_rows(rows)
    methods = [m for m in ABLATION_METHODS if any(r.method == m for r in rows)]
    if len(methods) < 2:
        return None
    sub = [r for r in rows if r.method in methods]
    if len(context_names) == 1:
        return return_vs_context(sub, context_names[0], out_stem, methods=methods, family=family,
                                 title="Ablation: generating Q and the TD loss (held-out tasks)")
    if stats is None:
        return None
    return summary_intervals(stats, out_stem, methods=methods, title="Ablation: generating Q and the TD loss")


def make_all_figures(rows: Sequence[ResultRow], context_names: Sequence[str], out_dir: str | Path,
                     stats: Sequence | None = None, run_dir: str | Path | None = None,
                     family: str | None = None) -> list[Path]:
    """Every results figure that fits this sweep; returns the written paths (PNG and PDF). `stats` (from
    `stats.aggregate`, computed here when None) feed the interval figure; `run_dir` the learning curves;
    `family` the units on the context axes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = test_rows(rows)  # every figure is about held-out tasks: the cloning (training-task) rows stay out
    if not rows:
        raise ValueError("no held-out result rows to plot; run the evaluation first")
    written: list[Path] = []
    zero_shot = [r for r in rows if "@" not in r.method]
    if len(context_names) == 1:
        written += return_vs_context(zero_shot, context_names[0], out_dir / f"return_vs_{context_names[0]}",
                                     family=family)
    elif len(context_names) == 2:
        written += heatmaps(zero_shot, context_names, out_dir / "heatmaps", family=family)
        written += surfaces(zero_shot, context_names, out_dir / "surfaces", family=family)
    if stats is None:
        from hyperzero.evaluation.stats import aggregate

        stats = aggregate(rows, reps=1000)
    written += summary_intervals(stats, out_dir / "summary_intervals")
    abl = ablation(zero_shot, context_names, out_dir / "ablation", stats, family=family)
    if abl:
        written += abl
    if run_dir is not None:
        written += learning_curves(run_dir, out_dir / "learning_curves") or []
    return written
