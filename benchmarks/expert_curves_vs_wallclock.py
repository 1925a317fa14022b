"""Expert learning curves against wall-clock, solvers side by side on the same cores.

    flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/expert_curves_vs_wallclock.py \
        --solver fast --speeds 3 -3 --steps 30000 --out $HOME/hz-runs/curves
    # then: --solver authors, --solver sb3-td3, --solver sb3-sac (run two at a time on 2 cores), and
    .venv/bin/python benchmarks/expert_curves_vs_wallclock.py --plot $HOME/hz-runs/curves --png docs/figures/expert-solvers.png

Every solver trains one expert per speed (ours: one stacked ensemble holding all speeds; SB3: one run per speed,
one after another in the same process), single-threaded, and every --eval-every steps runs --eval-episodes
deterministic episodes on the same episode seeds as our trainer's evaluation. Rows go to
<out>/<solver>.csv: solver, speed, step, wall seconds (training only, evaluation time excluded), return.
SB3 runs use SB3's defaults except the network width (256-256, like ours) and the evaluation.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOLVERS = ("fast", "authors", "sb3-td3", "sb3-sac")


def _eval_seeds(n: int, seed: int = 2) -> list[int]:
    from hyperzero.experts.trainer import _EVAL_EPISODE, episode_seed

    return [episode_seed(seed, _EVAL_EPISODE, k) for k in range(n)]


def _evaluate(act, speed: float, episodes: int) -> float:
    import numpy as np

    from hyperzero.envs import make

    env = make("cheetah-run", {"speed": speed})
    returns = []
    for s in _eval_seeds(episodes):
        obs, _ = env.reset(seed=s)
        done, ret = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            ret += r
            done = term or trunc
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def run_ours(profile: str, speeds, steps: int, every: int, episodes: int, writer) -> None:
    import torch

    from hyperzero.envs import context_id, get_family
    from hyperzero.experts.profiles import profile_config
    from hyperzero.experts.trainer import GroupTrainer, TaskSpec

    torch.set_num_threads(1)
    space = get_family("cheetah-run").context_space
    with tempfile.TemporaryDirectory() as tmp:
        tasks = []
        for s in speeds:
            ctx = space.validate({"speed": s})
            tasks.append(TaskSpec(context_id(ctx), ctx, 2, Path(tmp) / context_id(ctx)))
        cfg = profile_config(profile, train_steps=steps, eval_every=every, eval_episodes=episodes,
                             checkpoint_every=0, torch_threads=1, device="cpu")
        trainer = GroupTrainer("cheetah-run", tasks, cfg, progress=False)
        evaluate, spent = trainer.evaluate, [0.0]
        t0 = time.perf_counter()

        def timed_evaluate(episodes=None):
            e0 = time.perf_counter()
            out = evaluate(episodes)
            spent[0] += time.perf_counter() - e0
            wall = time.perf_counter() - t0 - spent[0]
            for s, row in zip(speeds, out):
                writer.writerow([profile, s, trainer.step, f"{wall:.1f}", f"{row['return_mean']:.1f}"])
            return out

        trainer.evaluate = timed_evaluate
        trainer._write_expert = lambda i, final: None  # files are not part of the comparison
        trainer.train()


def run_sb3(algo: str, speeds, steps: int, every: int, episodes: int, writer) -> None:
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback

    from hyperzero.envs import make

    torch.set_num_threads(1)
    cls = {"sb3-td3": TD3, "sb3-sac": SAC}[algo]
    for speed in speeds:
        class Eval(BaseCallback):
            def __init__(self):
                super().__init__()
                self.t0, self.spent = time.perf_counter(), 0.0

            def _on_step(self) -> bool:
                if self.num_timesteps % every == 0:
                    e0 = time.perf_counter()
                    ret = _evaluate(lambda o: self.model.predict(o, deterministic=True)[0], speed, episodes)
                    self.spent += time.perf_counter() - e0
                    wall = time.perf_counter() - self.t0 - self.spent
                    writer.writerow([algo, speed, self.num_timesteps, f"{wall:.1f}", f"{ret:.1f}"])
                return True

        env = make("cheetah-run", {"speed": speed}, seed=2)
        model = cls("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, device="cpu", seed=2, verbose=0)
        model.learn(total_timesteps=steps, callback=Eval())


def plot(run_dir: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperzero.utils.hardware import cpu_model

    rows = []
    for f in sorted(run_dir.glob("*.csv")):
        with open(f) as fh:
            rows += [r for r in csv.reader(fh)]
    speeds = sorted({float(r[1]) for r in rows})
    fig, axes = plt.subplots(1, len(speeds), figsize=(5 * len(speeds), 3.6), squeeze=False)
    for ax, speed in zip(axes[0], speeds):
        for solver in SOLVERS:
            pts = sorted((float(r[3]), float(r[4])) for r in rows if r[0] == solver and float(r[1]) == speed)
            if pts:
                ax.plot([p[0] / 60 for p in pts], [p[1] for p in pts], marker="o", ms=3, label=solver)
        ax.set_title(f"cheetah-run, speed {speed:+g}")
        ax.set_xlabel("training wall-clock (min, 1 thread)")
        ax.set_ylabel("deterministic return")
        ax.set_ylim(0, 1000)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"expert solvers side by side ({cpu_model()})", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solver", choices=SOLVERS)
    ap.add_argument("--speeds", nargs="+", type=float, default=[3.0, -3.0])
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--eval-every", type=int, default=5_000)
    ap.add_argument("--eval-episodes", type=int, default=3)
    ap.add_argument("--out", help="directory of the per-solver CSV files")
    ap.add_argument("--plot", help="plot the CSV files of this directory")
    ap.add_argument("--png", default="docs/figures/expert-solvers.png")
    args = ap.parse_args()
    if args.plot:
        plot(Path(args.plot), Path(args.png))
        return
    if not args.solver or not args.out:
        ap.error("give --solver and --out (or --plot DIR)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{args.solver}.csv", "w", newline="", buffering=1) as f:
        writer = csv.writer(f)
        if args.solver.startswith("sb3"):
            run_sb3(args.solver, args.speeds, args.steps, args.eval_every, args.eval_episodes, writer)
        else:
            run_ours(args.solver, args.speeds, args.steps, args.eval_every, args.eval_episodes, writer)


if __name__ == "__main__":
    main()
