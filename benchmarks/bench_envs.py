"""Env steps/s: plain dm_control vs our contextual dm_control env vs our Gymnasium env, side by side.

    python benchmarks/bench_envs.py [--steps 20000] [--repeats 3] [--out docs/benchmarks-envs.md]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from hyperzero.envs import FAMILIES, make  # first: sets MUJOCO_GL before dm_control loads
from dm_control import suite  # noqa: E402
from hyperzero.utils.io import atomic_write_text
from hyperzero.utils.runinfo import versions

SUITE_NAMES = {"cheetah-run": ("cheetah", "run"), "walker-walk": ("walker", "walk"), "finger-spin": ("finger", "spin")}


def steps_per_second(step, reset, actions) -> float:
    reset()
    t0 = time.perf_counter()
    for a in actions:
        if step(a):
            reset()
    return len(actions) / (time.perf_counter() - t0)


def bench(family: str, n: int, repeats: int) -> dict[str, float]:
    domain, task = SUITE_NAMES[family]
    plain = suite.load(domain, task, task_kwargs={"random": 0})
    ours_dmc = FAMILIES[family].make_dmc(seed=0)
    ours_gym = make(family, seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (n, ours_gym.action_space.shape[0]))
    runners = {
        "dm_control": (lambda a: plain.step(a).last(), plain.reset),
        "hyperzero dm_control": (lambda a: ours_dmc.step(a).last(), ours_dmc.reset),
        "hyperzero gymnasium": (lambda a: any(ours_gym.step(a)[2:4]), lambda: ours_gym.reset(seed=0)),
    }
    results = {k: [] for k in runners}
    for _ in range(repeats):  # interleaved, so background load hits every variant alike
        for name, (step, reset) in runners.items():
            results[name].append(steps_per_second(step, reset, actions))
    return {k: float(np.median(v)) for k, v in results.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20000, help="steps per measurement")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    p.add_argument("--out", default="docs/benchmarks-envs.md", help="markdown file for the table")
    args = p.parse_args()
    v = versions()
    lines = [
        "# Environment throughput",
        "",
        f"Command: `python benchmarks/bench_envs.py --steps {args.steps} --repeats {args.repeats}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {v['platform']}; 1 process, random actions; "
        f"median of {args.repeats} interleaved repeats.  ",
        f"Versions: dm_control {v['dm_control']}, mujoco {v['mujoco']}, gymnasium {v['gymnasium']}, numpy {v['numpy']}.",
        "",
        "| family | dm_control steps/s | hyperzero dm_control steps/s | hyperzero Gymnasium steps/s | Gymnasium overhead vs dm_control |",
        "|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        r = bench(family, args.steps, args.repeats)
        overhead = 1 - r["hyperzero gymnasium"] / r["dm_control"]
        lines.append(f"| {family} | {r['dm_control']:,.0f} | {r['hyperzero dm_control']:,.0f} | "
                     f"{r['hyperzero gymnasium']:,.0f} | {overhead:+.1%} |")
        print(lines[-1], flush=True)
    lines += ["", "Overhead = 1 - (ours / plain); negative means ours was faster in this measurement.",
              "The contextual reward and the flat float32 observation are the only per-step additions."]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
