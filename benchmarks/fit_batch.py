"""Fit throughput against the batch size, at each family's shapes: what a larger batch costs per gradient step.

A HyperZero step on a CPU is bound by memory traffic over the heads' parameters (generation, their gradient, Adam:
docs/results/imitation.md) as much as by the per-sample work, so a step with more samples should cost less than
proportionally more. This measures it: milliseconds per step and samples/s of full training steps (sample, loss, backward, fused Adam, as the
fit loop does) for each (tasks per batch K, batch size), one torch thread as a fit under the Ray executor has.

    flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/fit_batch.py --markdown /tmp/fit-batch.md
    python benchmarks/fit_batch.py --device cuda --batches 4x512,16x2048,16x8192   # on a GPU machine

Synthetic data at the family's observation and action sizes and a 2-D context (the networks' shapes are what
matter); `ModelConfig(obs_norm=True)` as the presets fit. The table goes to stdout (and --markdown), with the CPU,
the command and the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_training import train_rate  # the same step as the throughput table of docs/benchmarks-training.md
from hyperzero.envs import get_family
from hyperzero.models.config import ModelConfig
from hyperzero.models.registry import build_method
from hyperzero.training.data import TaskSampler
from hyperzero.training.synthetic import make_synthetic_dataset
from hyperzero.utils.hardware import cpu_kind

CONTEXT_DIM, N_TASKS = 2, 32


def parse_batches(text: str) -> list[tuple[int, int]]:
    """"8x512,16x2048" -> [(8, 512), (16, 2048)]: tasks per batch x samples per step."""
    out = []
    for item in text.split(","):
        try:
            k, b = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--batches item {item!r}: write K x batch, e.g. 8x512") from None
        if k < 1 or b < k:
            raise SystemExit(f"--batches item {item!r}: need K >= 1 and batch >= K")
        out.append((k, b))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="cheetah-run,walker-walk,finger-spin", help="comma list of families")
    ap.add_argument("--methods", default="hyperzero,hyperzero_without_q,mlp_policy", help="comma list of methods")
    ap.add_argument("--batches", default="8x512,8x1024,16x2048,16x4096",
                    help="comma list of K x batch (tasks per batch x samples per step); the reduced presets fit on 4x512")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a fit under the Ray executor has 1)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i> (model and sampled batches on it)")
    ap.add_argument("--steps", type=int, default=40, help="timed gradient steps per measurement (after 10 warm-up)")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args()
    batches = parse_batches(args.batches)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for family in args.families.split(","):
        fam = get_family(family)
        rng = np.random.default_rng(0)
        ds = make_synthetic_dataset(rng.uniform(-2, 2, size=(N_TASKS, CONTEXT_DIM)), obs_dim=fam.obs_dim,
                                    act_dim=fam.act_dim, n_episodes=1, episode_length=250, seed=0)
        contexts = np.stack([t.context_vector for t in ds.tasks]) / 2.0
        for method in args.methods.split(","):
            torch.manual_seed(0)
            model = build_method(method, CONTEXT_DIM, fam.obs_dim, fam.act_dim, ModelConfig(obs_norm=True))
            model.to(args.device)
            base = None
            for k, batch in batches:
                sampler = TaskSampler(ds.tasks, contexts, k, batch, 0, need_q=model.has_q, device=args.device)
                rate = train_rate(model, sampler, args.steps)
                ms = sampler.k * sampler.per_task / rate * 1e3
                base = base or ms
                rows.append((family, method, f"{k} x {batch}", ms, rate, ms / base))
                print(f"{family:12s} {method:20s} K={k:3d} batch={batch:5d} {ms:8.2f} ms/step {rate:10.0f} samples/s",
                      flush=True)
    load_after = os.getloadavg()
    lock = "flock /tmp/hyperzero-bench.lock " if args.device == "cpu" else ""  # a lent GPU machine runs nothing else
    cmd = f"{lock}python benchmarks/fit_batch.py " + " ".join(sys.argv[1:])
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {cpu_kind()}"
             f"{' with ' + torch.cuda.get_device_name(args.device) if args.device != 'cpu' else ''}, "
             f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s); load average (1/5/15 min) before "
             f"{' / '.join(f'{x:.2f}' for x in load_before)}, after {' / '.join(f'{x:.2f}' for x in load_after)}.",
             f"Command: `{cmd.strip()}`", "",
             "| family | method | K x batch | ms / step | samples / s | step time against the first batch |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {f} | {m} | {kb} | {ms:.2f} | {rate:,.0f} | {rel:.2f}x |" for f, m, kb, ms, rate, rel in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
