"""Expert-solver variants on the same tasks, for choosing the presets' default (issue: experts that learn).

    .venv/bin/python benchmarks/solver_sweep.py --variant fast --tasks 2 3 4 -4 --steps 40000 \
        --out $HOME/hz-runs/solver/fast

Each variant trains one ensemble (one member per speed) of cheetah-run experts with the same seed, evaluates
every --eval-every steps, and appends rows to <out>/final.csv: variant, seed, speed, steps, return, wall seconds (curves in
<out>/<task>/progress.csv). The quality gate is off: this compares solvers, not retries.
Resumable: rerunning the same command continues from the checkpoints. Variants are TD3Config overrides.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hyperzero.experts import TD3Config  # noqa: E402
from hyperzero.experts.profiles import PROFILES  # noqa: E402

COMMON = dict(eval_episodes=3, checkpoint_every=10_000, seed=2)
VARIANTS: dict[str, dict] = {
    **{name: dict(profile) for name, profile in PROFILES.items()},
    # the quickstart's settings before this change: lr 3e-4, 128-128, the authors' noise decayed over 30k
    "quickstart-v1": dict(hidden_sizes=(128, 128), actor_lr=3e-4, critic_lr=3e-4, std_decay_steps=30_000),
    # one change at a time on top of quickstart-v1
    "v1+nstep3+ln": dict(hidden_sizes=(128, 128), actor_lr=3e-4, critic_lr=3e-4, std_decay_steps=30_000,
                         n_step=3, critic_layer_norm=True),
    "fast-lr1e-3": {**PROFILES["fast"], "actor_lr": 1e-3, "critic_lr": 1e-3},
    "fast-256": {**PROFILES["fast"], "hidden_sizes": (256, 256)},  # walker: more capacity for a 24-dim state
    # fast, plus every member learning from the others' transitions relabelled with its own reward
    "fast+shared": {**PROFILES["fast"], "share_experience": True},
    "fast+obsnorm": {**PROFILES["fast"], "obs_norm": True},  # running observation normalisation (SimBa's RSNorm)
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    ap.add_argument("--family", default="cheetah-run")
    ap.add_argument("--tasks", nargs="+", type=float, default=[2, 3, 4, -4], help="signed speeds")
    ap.add_argument("--steps", type=int, default=40_000)
    ap.add_argument("--eval-every", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from hyperzero.experts import train_experts

    overrides = {**COMMON, **VARIANTS[args.variant], "seed": args.seed}
    cfg = TD3Config(**{**overrides, "train_steps": args.steps, "eval_every": args.eval_every,
                       "torch_threads": args.threads, "device": "cpu"})
    out = Path(args.out)
    t0 = time.time()
    summaries = train_experts(args.family, [{"speed": s} for s in args.tasks], out, cfg, ensemble_size=len(args.tasks),
                              num_workers=1, progress=False, gate=None)
    wall = time.time() - t0
    with open(out / "final.csv", "a", newline="") as f:
        w = csv.writer(f)
        for s in summaries:
            w.writerow([args.variant, args.seed, s["context"]["speed"], s["train_steps"], f"{s['eval_return_mean']:.1f}",
                        f"{wall:.0f}"])
    for s in summaries:
        print(f"{args.variant} seed {args.seed} speed {s['context']['speed']:+g}: {s['eval_return_mean']:.1f}")
    print(f"wall {wall:.0f} s")


if __name__ == "__main__":
    main()
