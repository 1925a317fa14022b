"""Training throughput per method, grouped-by-task vs per-sample weight generation, and per-action
latency of a generated policy (torch), the exported numpy policy and TorchScript.

    flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/bench_training.py [--threads 1,2] [--steps 30]

Shapes follow cheetah-run (S=17, A=6), a 2-D context, 64 tasks, batch 512, K=8, the default ModelConfig.
Writes docs/benchmarks-training.md (one run; machine, command and load are recorded with the numbers).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hyperzero.models.config import ModelConfig
from hyperzero.models.export import NumpyPolicy
from hyperzero.models.heads import per_sample
from hyperzero.models.registry import METHODS, build_method
from hyperzero.training.data import TaskSampler
from hyperzero.training.loop import make_optimizer
from hyperzero.training.synthetic import make_synthetic_dataset

S, A, D, N_TASKS = 17, 6, 2, 64


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def train_rate(model, sampler, steps: int, regroup=None, warmup: int = 10, fused: bool = True) -> float:
    """Samples per second of full training steps (sample, loss, backward, Adam), as in the fit loop."""
    opt = make_optimizer(model, 1e-4) if fused else torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        b = sampler.sample()
        loss, _ = model.loss(regroup(b) if regroup else b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def wait():  # CUDA runs asynchronously: time finished work, not queued launches
        if sampler.device.type == "cuda":
            torch.cuda.synchronize(sampler.device)

    for _ in range(warmup):
        step()
    wait()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    wait()
    return steps * sampler.k * sampler.per_task / (time.perf_counter() - t)


def latency_us(fn, n: int = 2000) -> float:
    for _ in range(50):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma list of torch thread counts to measure")
    ap.add_argument("--steps", type=int, default=30, help="timed gradient steps per measurement")
    ap.add_argument("--methods", default="all", help="comma list of methods or 'all'")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks-training.md"))
    args = ap.parse_args()
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    cfg = ModelConfig()
    rng = np.random.default_rng(0)
    ds = make_synthetic_dataset(rng.uniform(-2, 2, size=(N_TASKS, D)), obs_dim=S, act_dim=A, n_episodes=1,
                                episode_length=250, seed=0)
    ctx = np.stack([t.context_vector for t in ds.tasks]) / 2.0
    load_before = os.getloadavg()

    rows = []  # (method, params, {threads: rate})
    grouped = {}
    for th in threads:
        torch.set_num_threads(th)
        for m in methods:
            torch.manual_seed(0)
            model = build_method(m, D, S, A, cfg)
            sampler = TaskSampler(ds.tasks, ctx, 8, 512, 0, need_q=True)
            try:
                rate = train_rate(model, sampler, args.steps)
            except Exception as e:  # a method that cannot train on this batch is reported, not hidden
                rate = float("nan")
                print(f"{m}: {type(e).__name__}: {e}", file=sys.stderr)
            rows.append((m, th, sum(p.numel() for p in model.parameters()), rate))
            print(f"threads={th} {m:22s} {rate:10.0f} samples/s", flush=True)
        torch.manual_seed(0)
        hz = build_method("hyperzero", D, S, A, cfg)
        for k in (4, 8, 16):
            sampler = TaskSampler(ds.tasks, ctx, k, 512, 0, need_q=True)
            grouped[(th, f"grouped K={k}")] = train_rate(hz, sampler, args.steps)
        sampler = TaskSampler(ds.tasks, ctx, 8, 512, 0, need_q=True)
        grouped[(th, "per-sample (512 generated nets per batch)")] = train_rate(hz, sampler, args.steps, per_sample)
        sampler = TaskSampler(ds.tasks, ctx, 8, 512, 0, need_q=True)
        grouped[(th, "grouped K=8, default (for-loop) Adam instead of fused")] = train_rate(hz, sampler, args.steps,
                                                                                           fused=False)
        for k, v in grouped.items():
            if k[0] == th:
                print(f"threads={th} hyperzero {k[1]:40s} {v:10.0f} samples/s", flush=True)

    # ---- latency of one action for a fixed context (1 thread) ----
    torch.set_num_threads(1)
    torch.manual_seed(0)
    hz = build_method("hyperzero", D, S, A, cfg).eval()
    c = torch.tensor(ctx[0], dtype=torch.float32)
    pol = hz.policy(c)
    obs_np = rng.normal(size=S).astype(np.float32)
    obs_t = torch.from_numpy(obs_np)
    lat = {}
    with torch.no_grad():
        lat["HyperZero, regenerate weights every step (model.generate + act)"] = latency_us(
            lambda: hz.generate(c[None]).act(obs_t[None, None]), n=300)
    lat["GeneratedPolicy.act, torch in/out"] = latency_us(lambda: pol.act(obs_t))
    lat["GeneratedPolicy.act, numpy in/out"] = latency_us(lambda: pol.act(obs_np))
    with tempfile.TemporaryDirectory() as tmp:
        pol.save_npz(Path(tmp) / "p.npz")
        npol = NumpyPolicy.load(Path(tmp) / "p.npz")
        pol.save_torchscript(Path(tmp) / "p.pt")
        ts = torch.jit.load(str(Path(tmp) / "p.pt"))
    lat["NumpyPolicy.act (exported .npz, numpy only)"] = latency_us(lambda: npol.act(obs_np))
    obs_b = obs_t[None]
    with torch.no_grad():
        lat["TorchScript forward, [1,S] tensor"] = latency_us(lambda: ts(obs_b))
    err = float(np.abs(npol.act(obs_np) - pol.act(obs_t).numpy()).max())  # numpy export vs the torch path
    for k, v in lat.items():
        print(f"{k:70s} {v:9.1f} us", flush=True)
    load_after = os.getloadavg()

    # ---- report ----
    cmd = "flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/bench_training.py " + " ".join(sys.argv[1:])
    lines = ["# Training benchmarks", "",
             f"One run on {time.strftime('%Y-%m-%d %H:%M %Z')}. Machine: {cpu_name()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, Python {platform.python_version()}.",
             f"Load average (1/5/15 min) before: {' / '.join(f'{x:.1f}' for x in load_before)}, after: "
             f"{' / '.join(f'{x:.1f}' for x in load_after)}. **The 2 cores were shared with other jobs during the run, "
             "so absolute rates are lower and noisier than on an idle machine; compare rows within one table.**", "",
             f"Command: `{cmd.strip()}`", "",
             f"Setup: cheetah-run shapes (S={S}, A={A}), context dim {D}, {N_TASKS} synthetic tasks, batch 512, "
             f"K=8 tasks per batch (64 samples each), default ModelConfig (embedding 64-128-256, hidden 256), Adam; "
             f"{args.steps} timed steps after 10 warm-up steps. A step = sample + loss + backward + Adam "
             "(fused Adam, as `fit` uses, unless stated).", "",
             "## Training throughput per method (samples/s)", "",
             "| method | params | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
             "|---|---|" + "---|" * len(threads)]
    for m in methods:
        r = {th: rate for (mm, th, _, rate) in rows if mm == m}
        params = next(p for (mm, _, p, _) in rows if mm == m)
        lines.append(f"| {m} | {params:,} | " + " | ".join(f"{r[t]:,.0f}" for t in threads) + " |")
    lines += ["", "## HyperZero: grouped-by-task vs per-sample weight generation (samples/s, same run)", "",
              "| mode | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
              "|---|" + "---|" * len(threads)]
    for mode in dict.fromkeys(k[1] for k in grouped):
        lines.append(f"| {mode} | " + " | ".join(f"{grouped[(t, mode)]:,.0f}" for t in threads) + " |")
    per = {t: grouped[(t, "per-sample (512 generated nets per batch)")] for t in threads}
    lines += ["", "Speed-up of grouped K=8 over per-sample: " + ", ".join(
        f"{grouped[(t, 'grouped K=8')] / per[t]:.1f}x ({t} thread{'s' if t > 1 else ''})" for t in threads) + ".",
              "", "## Per-action latency, one context, batch of 1 observation, 1 thread (µs)", "",
              "| path | µs / action |", "|---|---|"]
    lines += [f"| {k} | {v:,.1f} |" for k, v in lat.items()]
    lines += ["", f"Exported numpy policy vs GeneratedPolicy (torch path): max |Δa| = {err:.1e}.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
