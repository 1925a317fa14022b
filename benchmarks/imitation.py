"""Imitation before transfer: the same experts, datasets and fits that differ in one choice at a time.

Each variant is a full `hyperzero run` of a preset with a few `--set` overrides, in its own run directory under
ROOT/<preset>/<variant>/, sharing the experts of one base run (hard links, so they are trained once). Evaluation
scores every fit on held-out tasks (transfer) and on training tasks (cloning), so the table shows whether a choice
helps a method copy its experts, transfer, or both.

    python benchmarks/imitation.py run --preset walker-walk-dynamics-small --base ~/hz-runs/wdyn --root ~/hz-runs/imitation
    python benchmarks/imitation.py table --preset walker-walk-dynamics-small --root ~/hz-runs/imitation
    # beside a run of the same preset and dataset (e.g. the published one), with P(variant > it) per method
    python benchmarks/imitation.py table --preset walker-walk-dynamics-small --root ~/hz-runs/imitation-zen3 \
        --reference ~/hz-runs/rerun/walker-walk-dynamics-small
    # other split seeds, one method (the variant's own methods otherwise)
    python benchmarks/imitation.py run --preset walker-walk-dynamics-small --base ~/hz-runs/wdyn --root ~/hz-runs/seeds5-9 \
        --variants preset+ctx0.4sp --set 'fit.seeds=[5,6,7,8,9]' --methods hyperzero
    python benchmarks/imitation.py curves --preset walker-walk-dynamics-small --root ~/hz-runs/imitation --out docs/figures/x.png

`run` is resumable (each variant is a resumable pipeline run; a finished one is skipped by the pipeline itself).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hyperzero.utils.hardware import cpu_kind

# the methods of a variant: HyperZero, its policy-only ablation (does the Q head help?) and the context-blind policy
# (what knowing the task is worth)
METHODS = ["hyperzero", "hyperzero_without_q", "context_blind"]
# every variant states each studied key, so it means the same whatever the preset's current defaults are
BEFORE = ["fit.model.obs_norm=false", "dataset.action_noise=0.0", "dataset.n_episodes=5"]  # the protocol until 2026-12
OBS_NORM = ["fit.model.obs_norm=true", "dataset.action_noise=0.0", "dataset.n_episodes=5"]
OBS_NORM_DART = ["fit.model.obs_norm=true", "dataset.action_noise=0.2", "dataset.n_episodes=10"]
BATCH = ["fit.batch_size=512", "fit.tasks_per_batch=4"]  # the reduced presets' batch (finger's until 2026-12-02)
# 4x the samples per step: a step costs ~1.5x as much (memory-bound on the heads, benchmarks/fit_batch.py)
BIG_BATCH = ["fit.batch_size=2048", "fit.tasks_per_batch=16"]
LONG = ["fit.steps=4000", "fit.eval_interval=500", "fit.lr_sweep_steps=1000", "fit.checkpoint_interval=1000"]
LONGER = ["fit.steps=8000", "fit.eval_interval=1000", "fit.lr_sweep_steps=1000", "fit.checkpoint_interval=1000"]
BOUNDS_NOISE = ["fit.context_noise_unit=bounds"]  # the unit of context_noise until 2026-12-04
SPACING_NOISE = ["fit.context_noise_unit=spacing"]  # its unit since: x the training tasks' spacing per feature
NO_NOISE = ["fit.context_noise=0.0"]  # walker-walk-dynamics-small's preset has noise since 2026-12-04
# name -> (methods, overrides)
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    "preset": (METHODS, BEFORE + BATCH + NO_NOISE),
    "obs_norm": (METHODS, OBS_NORM + BATCH + NO_NOISE),
    "obs_norm+dart": (METHODS, OBS_NORM_DART + BATCH + NO_NOISE),
    # the authors' unscaled value targets (κ = 1) against κ = 1 / mean |q*| of "obs_norm+dart"
    "obs_norm+dart+unscaled": (["hyperzero"], OBS_NORM_DART + BATCH + NO_NOISE + ["fit.value_scale=1.0"]),
    "obs_norm+dart+4k": (["hyperzero", "hyperzero_without_q"], OBS_NORM_DART + BATCH + LONG + NO_NOISE),
    "obs_norm+dart+b2048": (["hyperzero", "hyperzero_without_q"], OBS_NORM_DART + BIG_BATCH + NO_NOISE),
    # twice the walker presets' steps, at either batch (walker's cloning curves still rose at 4000)
    "obs_norm+dart+8k": (["hyperzero", "hyperzero_without_q"], OBS_NORM_DART + BATCH + LONGER + NO_NOISE),
    "obs_norm+dart+b2048+8k": (["hyperzero", "hyperzero_without_q"], OBS_NORM_DART + BIG_BATCH + LONGER + NO_NOISE),
    # the walker presets' protocol with noise on the training contexts (std in normalised units, [-1, 1] = the
    # family's bounds): does a smoothness prior over contexts help a generated policy between / beyond few tasks?
    # (measured before noise kept a target speed's sign)
    "obs_norm+dart+b2048+8k+ctx0.1": (["hyperzero", "hyperzero_without_q", "mlp_policy"],
                                      OBS_NORM_DART + BIG_BATCH + LONGER + BOUNDS_NOISE + ["fit.context_noise=0.1"]),
    "obs_norm+dart+b2048+8k+ctx0.3": (["hyperzero"], OBS_NORM_DART + BIG_BATCH + LONGER + BOUNDS_NOISE
                                      + ["fit.context_noise=0.3"]),
    # any preset's own protocol (its config.yaml records it) with the same noise, against its published run
    "preset+ctx0.1": (["hyperzero", "mlp_policy"], BOUNDS_NOISE + ["fit.context_noise=0.1"]),
    # a quarter of it: on the quickstart 0.1 of cheetah's ±10 m/s bounds is 1 m/s, twice its tasks' spacing
    "preset+ctx0.025": (["hyperzero", "mlp_policy"], BOUNDS_NOISE + ["fit.context_noise=0.025"]),
    # the std in units of the training tasks' spacing per feature instead, the same on every grid: 0.4 is about
    # what 0.1 of the bounds was on the five reduced settings where it helped (0.2-0.6; 1-2 on the quickstart, where
    # it hurt)
    "preset+ctx0.4sp": (["hyperzero", "mlp_policy"], SPACING_NOISE + ["fit.context_noise=0.4"]),
    "preset+ctx0.2sp": (["hyperzero", "mlp_policy"], SPACING_NOISE + ["fit.context_noise=0.2"]),
    # control: draws the noise (so the sampler's random stream is that of any noisy fit) at a std too small to
    # matter; its distance from the published fit is the run-to-run spread a change of stream alone causes
    "preset+ctx1e-6sp": (["hyperzero", "mlp_policy"], SPACING_NOISE + ["fit.context_noise=1e-6"]),
    # any preset's own protocol with the dense presets' selection: every non-test task trains, and checkpoints and
    # the learning rate are chosen on rollouts of 4 training tasks (fresh episodes) instead of one carved-out
    # validation task (walker-walk-*-small's 8-12 tasks leave one, scored on 2 episodes); the same test tasks
    "preset+valtrain": (["hyperzero", "mlp_policy"], ["fit.validation=train", "fit.val_train_tasks=4"]),
}


def recorded_cpus(root: Path) -> str:
    """The CPUs the variants under `root` ran on, from their imitation.json (this machine's when none records one)."""
    cpus = []
    for record in sorted(root.glob("*/imitation.json")):
        cpu = json.loads(record.read_text()).get("cpu")
        if cpu and cpu not in cpus:
            cpus.append(cpu)
    return "; ".join(cpus) or f"{cpu_kind()} (this machine; no variant recorded one)"


def run(args) -> int:
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    hyperzero = str(Path(sys.executable).with_name("hyperzero"))
    for name in names:
        out = Path(args.root) / args.preset / name
        methods, changes = VARIANTS[name]
        methods = args.methods.split(",") if args.methods else methods
        overrides = [f"fit.methods=[{','.join(methods)}]", "evaluate.videos=false", *changes, *(args.set or [])]
        cmd = [hyperzero, "run", args.preset, "--out", str(out), "--no-progress"]
        if args.base and not (out / "experts").exists():  # linked once; a resumed variant has them already
            cmd += ["--experts-from", args.base]
        for o in overrides:
            cmd += ["--set", o]
        load_before, start = os.getloadavg(), time.time()
        print(f"[imitation] {name}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
        record = {"variant": name, "overrides": overrides, "command": cmd, "seconds": round(time.time() - start, 1),
                  "load_before": load_before, "load_after": os.getloadavg(), "cpu": cpu_kind(),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (out / "imitation.json").write_text(json.dumps(record, indent=1))
    return 0


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(row: dict | None, value: str = "score") -> str:
    if row is None:
        return "—"
    point, lo, hi = (float(row.get(f"iqm_{value}{k}") or "nan") for k in ("", "_lo", "_hi"))
    if point != point:  # NaN: too few pairs for an IQM
        mean = float(row.get(f"mean_{value}") or "nan")
        return "—" if mean != mean else f"mean {mean:.2f} (n={row.get('n_pairs')})"
    digits = 2 if value == "score" else 0
    return f"{point:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _fit_cpu_minutes(run: Path, method: str) -> str:
    """Mean CPU-minutes of one method's fits (learning-rate sweep included), from their done.json."""
    seconds = []
    for done in sorted((run / "fits" / method).glob("seed_*/done.json")):
        record = json.loads(done.read_text())
        seconds.append(record.get("sweep_cpu_seconds") or record.get("cpu_seconds") or 0.0)
    return f"{sum(seconds) / len(seconds) / 60:.1f}" if seconds else "—"


def _print_rows(label: str, run: Path, methods: list[str]) -> None:
    """The table's rows of one run directory: cloning (training tasks) and transfer (held-out, between / outside)."""
    held_out = {r["method"]: r for r in _rows(run / "eval" / "summary.csv")}
    groups = [*(_rows(run / "eval" / "cloning.csv") if (run / "eval" / "cloning.csv").exists() else []),
              *(_rows(run / "eval" / "positions.csv") if (run / "eval" / "positions.csv").exists() else [])]
    by_group = {(g["method"], g["group"]): g for g in groups}
    for method in methods:
        if method not in held_out:
            continue
        train = by_group.get((method, "train"))
        expert_train = float(train["expert_return_mean"]) if train else float("nan")
        held = held_out[method]
        experts = [float(r["expert_return"]) for r in _rows(run / "eval" / "results.csv") if r["method"] == method
                   and r.get("role", "test") == "test" and not r.get("excluded")]
        held["expert_return_mean"] = sum(experts) / len(experts) if experts else "nan"
        print(f"| {label} | {method} | {_cell(train)} | {_cell(train, 'return')} | {_cell(held)} | "
              f"{_cell(held, 'return')} | {_cell(by_group.get((method, 'between')))} | "
              f"{_cell(by_group.get((method, 'outside')))} | {expert_train:.0f} / "
              f"{float(held.get('expert_return_mean') or 'nan'):.0f} | {_fit_cpu_minutes(run, method)} |")


def _improvement(run: Path, reference: Path, method: str) -> str:
    """P(the variant's fit beats the reference run's fit of `method` on a held-out pair), 95 % interval: both runs
    must hold out the same (split seed, task) pairs (same dataset tasks and split seeds)."""
    import dataclasses

    from hyperzero.evaluation.metrics import read_results, test_rows
    from hyperzero.evaluation.stats import aggregate

    # held-out rows only: the cloning rows sample the training tasks, which a variant may change (fit.validation)
    ours = [r for r in test_rows(read_results(run / "eval" / "results.csv")) if r.method == method]
    theirs = [dataclasses.replace(r, method="reference")
              for r in test_rows(read_results(reference / "eval" / "results.csv")) if r.method == method]
    if not ours or not theirs:  # e.g. a variant run with --methods
        return "— (not fitted in both)"
    if {(r.seed, r.task_id) for r in ours} != {(r.seed, r.task_id) for r in theirs}:
        return "— (other pairs)"
    stats = next(x for x in aggregate(ours + theirs, baseline="reference") if x.method == method)
    return f"{stats.poi:.2f} [{stats.poi_lo:.2f}, {stats.poi_hi:.2f}]"


def table(args) -> int:
    """One row per (variant, method): cloning (training tasks) and transfer (held-out, between / outside); with
    --reference, that run's rows first and, per variant row, P(variant > reference) on the same held-out pairs."""
    root = Path(args.root) / args.preset
    reference = Path(args.reference) if args.reference else None
    print("| variant | method | cloning: IQM score [95 % CI] | cloning: IQM return | held-out: IQM score | "
          "held-out: IQM return | between | outside | expert return (train / held-out) | fit CPU-min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    present = [n for n in VARIANTS if (root / n / "eval" / "summary.csv").exists()]
    if reference is not None:
        _print_rows(f"reference ({reference.name})", reference,
                    [r["method"] for r in _rows(reference / "eval" / "summary.csv")])
    for name in present:
        _print_rows(name, root / name, VARIANTS[name][0])
    print(f"\nCPU: {recorded_cpus(root)}. Variants: " + "; ".join(
        f"**{n}** = " + ", ".join(f"`{o}`" for o in VARIANTS[n][1]) for n in present))
    if reference is not None:
        shown = str(reference).replace(str(Path.home()), "~")
        print(f"\nP(variant > reference) on the same held-out (split seed, task) pairs, reference {shown}:\n")
        print("| variant | method | P(variant > reference) [95 % CI] |\n|---|---|---|")
        for name in present:
            for method in VARIANTS[name][0]:
                print(f"| {name} | {method} | {_improvement(root / name, reference, method)} |")
    return 0


def curves(args) -> int:
    """Validation return against gradient steps of every fit of one variant (the data behind the fit budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = Path(args.root) / args.preset / args.variant / "fits"
    fig, ax = plt.subplots(figsize=(7, 4))
    methods = sorted(p.name for p in fits.iterdir() if p.is_dir())
    for i, method in enumerate(methods):
        curves_of_seeds = {}
        for seed_dir in sorted((fits / method).glob("seed_*")):
            if (seed_dir / "progress.csv").exists():
                rows = [r for r in _rows(seed_dir / "progress.csv") if r.get("val/return") not in (None, "")]
                curves_of_seeds[seed_dir.name] = {int(float(r["step"])): float(r["val/return"]) for r in rows}
        for curve in curves_of_seeds.values():  # one thin line per split seed
            ax.plot(list(curve), list(curve.values()), color=f"C{i}", alpha=0.25, linewidth=0.8)
        steps = sorted(set.intersection(*(set(c) for c in curves_of_seeds.values()))) if curves_of_seeds else []
        ax.plot(steps, [sum(c[s] for c in curves_of_seeds.values()) / len(curves_of_seeds) for s in steps],
                color=f"C{i}", linewidth=2.2, label=f"{method} (mean of {len(curves_of_seeds)} split seeds)")
    ax.set_xlabel("gradient steps")
    import yaml

    config = yaml.safe_load((fits.parent / "config.yaml").read_text())
    on_train = config["fit"].get("validation") == "train"  # rollouts of training tasks on fresh episode seeds
    ax.set_ylabel("validation return (training tasks, fresh episodes)" if on_train
                  else "validation return (zero-shot, validation tasks)")
    ax.set_title(f"{args.preset} / {args.variant}\n{recorded_cpus(Path(args.root) / args.preset)}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the variants (resumable)")
    r.add_argument("--preset", required=True)
    r.add_argument("--root", required=True, help="variants go to ROOT/<preset>/<variant>/")
    r.add_argument("--base", help="a run directory whose experts/ every variant reuses (hard links)")
    r.add_argument("--variants", help=f"comma-separated subset of {list(VARIANTS)}")
    r.add_argument("--set", action="append", help="an extra override for every variant (repeatable)")
    r.add_argument("--methods", help="comma-separated methods to fit instead of each variant's own (e.g. hyperzero)")
    r.set_defaults(func=run)
    t = sub.add_parser("table", help="the cloning / transfer table of every variant, as markdown")
    t.add_argument("--preset", required=True)
    t.add_argument("--root", required=True)
    t.add_argument("--reference", help="a run directory of the same preset, experts and dataset (e.g. the published "
                                       "run) to show first and to compare every variant's fits with")
    t.set_defaults(func=table)
    c = sub.add_parser("curves", help="validation-return curves of one variant's fits, as a PNG")
    c.add_argument("--preset", required=True)
    c.add_argument("--root", required=True)
    c.add_argument("--variant", required=True)
    c.add_argument("--out", required=True)
    c.set_defaults(func=curves)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
