"""Per-task expert learning curves (deterministic evaluation return vs env steps) from experts' progress.csv.

    python benchmarks/plot_expert_curves.py RUN_OR_EXPERTS_DIR [...] --out docs/figures/expert-curves.png

Each argument is a directory holding `<task_id>/progress.csv` (an experts dir) or one task dir.
A dotted line marks ~100, what a motionless cheetah or spinner earns (walker has no such floor).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hyperzero.utils.io import read_json  # noqa: E402


def task_dirs(root: Path) -> list[Path]:
    if (root / "progress.csv").exists():
        return [root]
    return sorted(p.parent for p in root.glob("*/progress.csv"))


def eval_curve(task_dir: Path) -> tuple[list[int], list[float]]:
    steps, returns = [], []
    with open(task_dir / "progress.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("eval/return_mean"):
                steps.append(int(float(row["step"])))
                returns.append(float(row["eval/return_mean"]))
    return steps, returns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="experts directories or task directories")
    p.add_argument("--out", type=Path, default=Path("docs/figures/expert-curves.png"), help="output PNG (a PDF beside it)")
    args = p.parse_args()
    groups = {}
    for root in args.dirs:
        for d in task_dirs(root):
            summary = read_json(d / "summary.json") if (d / "summary.json").exists() else {}
            groups.setdefault(summary.get("family", root.name), []).append((d, summary))
    fig, axes = plt.subplots(1, len(groups), figsize=(max(7.0, 5.5 * len(groups)), 4.2), squeeze=False)
    for ax, (family, tasks) in zip(axes[0], sorted(groups.items())):
        cmap = plt.get_cmap("coolwarm")
        speeds = [t[1].get("context", {}).get("speed", 0.0) for t in tasks]
        lo, hi = min(speeds), max(speeds)
        for (d, summary), speed in sorted(zip(tasks, speeds), key=lambda x: x[1]):
            steps, returns = eval_curve(d)
            if not steps:
                continue
            color = "tab:blue" if hi == lo else cmap((speed - lo) / (hi - lo))
            ax.plot(steps, returns, marker="o", ms=3, color=color, label=d.name.split("_torso")[0].split("_finger")[0])
        if family != "walker-walk":  # walker's stand x move reward has no such floor
            ax.axhline(100, color="grey", ls=":", lw=1)
        ax.set(title=family, xlabel="env steps", ylabel="deterministic eval return", ylim=(0, 1000))
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Expert learning curves (dotted: ~100, what a motionless cheetah or spinner earns)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    fig.savefig(args.out.with_suffix(".pdf"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
