"""Where should a failed expert's retry start? Two kinds of gate retry on the same failed first attempts.

The gate retries a failed expert with a new seed, warm-started from the nearest passing expert of the same
direction, with a fresh replay and optimiser ("neighbour", what hyperzero.experts.gate does). The obvious
alternative is to keep training the failed expert itself ("self": its final checkpoint, weights, optimiser
state and replay included, trained the same number of steps more). This script takes a finished, gated
experts folder and, for every task the gate retried, runs the "self" retry into --out (stacked ensembles),
then prints one markdown row per task: first attempt, neighbour retry (read from the run), self retry.

    .venv/bin/python benchmarks/gate_retry_compare.py $HOME/hz-runs/nine/cheetah-run-reward-small/experts \
        --out $HOME/hz-runs/retry-self/cheetah-run-reward-small

Resumable (rerun the same command). Both retries train `gate.retry_steps` steps; the self retry continues
the first attempt's seed and is evaluated on its evaluation episodes, the neighbour retry on those of its
new seed. Results: docs/benchmarks-experts.md (h).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experts", type=Path, help="a finished experts folder (with gate.json and retry-1/ attempts)")
    p.add_argument("--out", type=Path, required=True, help="where the self-continued retries are trained")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()

    from hyperzero.experts.config import TD3Config
    from hyperzero.experts.trainer import CHECKPOINT, SUMMARY, TaskSpec, checkpoint_step, train_group
    from hyperzero.utils.hardware import cpu_model
    from hyperzero.utils.io import atomic_copy, read_json

    info = read_json(args.experts / "run_info.json")
    family = info["family"]
    retry_steps = read_json(args.experts / "gate.json")["config"]["retry_steps"]
    base = TD3Config.from_dict(info["config"])
    rows, tasks = [], []
    for summary_path in sorted(args.experts.glob(f"*/{SUMMARY}")):
        s = read_json(summary_path)
        if not s.get("retries"):
            continue
        first = s.get("first_attempt", s)
        task_dir = summary_path.parent
        out = args.out / s["task_id"]
        if not (out / CHECKPOINT).exists():
            atomic_copy(task_dir / CHECKPOINT, out / CHECKPOINT)  # the first attempt's final checkpoint
        tasks.append(TaskSpec(s["task_id"], s["context"], int(first["seed"]), out))
        rows.append((s["task_id"], first["eval_return_mean"], s["retries"][0]["eval_return_mean"], s["flagged"]))
    if not tasks:
        raise SystemExit(f"{args.experts}: no task was retried by the gate; nothing to compare")
    config = dataclasses.replace(base, train_steps=base.train_steps + (retry_steps or base.train_steps),
                                 torch_threads=args.threads)
    t0 = time.perf_counter()
    results = {}
    for step in sorted({checkpoint_step(t.dir) for t in tasks}):  # an ensemble resumes from one step
        group = [t for t in tasks if checkpoint_step(t.dir) == step]
        results.update({r["task_id"]: r for r in train_group(family, group, config, progress=False)})
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average after: {os.getloadavg()}; "
          f"{len(tasks)} self retries of {retry_steps} steps as stacked ensembles; this call took "
          f"{time.perf_counter() - t0:.0f} s (seconds when a rerun finds them finished)\n")
    print("| task | first attempt | retry from neighbour | retry from self | flagged after neighbour retry |")
    print("|---|---|---|---|---|")
    for task_id, first, neighbour, flagged in rows:
        print(f"| {task_id} | {first:.0f} | {neighbour:.0f} | {results[task_id]['eval_return_mean']:.0f} | "
              f"{'yes' if flagged else 'no'} |")


if __name__ == "__main__":
    main()
