"""Expert-solver benchmarks, measured side by side in one run (run under the shared benchmark lock):

    flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/bench_experts.py speed memory

* speed: agent env-steps/s of our trainer (N=1 fp32, N=8 fp32, N=8 bf16) vs stable-baselines3 TD3 on
  cheetah-run, all with [256,256] nets, batch 256, one update per env step, policy delay 2, measured
  after the seed phase (steady state: env step + act + replay insert + update).
* memory: peak RSS of an N-expert ensemble whose replay buffers hold 100k rows each (filled).
* ensemble: agent env-steps/s of N-expert ensembles of one solver profile on one device, for each N in
  --sizes and each precision in --precisions (e.g. a paper-scale grid on a GPU:
  `ensemble --device cuda --profile authors --sizes 1 8 32 64 --precisions fp32 bf16`).

Prints a markdown table; paste it into docs/benchmarks-experts.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _tasks(root: Path, speeds):
    from hyperzero.experts.sweep import plan_tasks

    return plan_tasks("cheetah-run", [{"speed": float(v)} for v in speeds], root, seed=2)


def _ours(n: int, precision: str, steps: int, threads: int, device: str = "cpu", profile: str = "authors") -> float:
    import numpy as np
    import torch

    from hyperzero.experts.profiles import profile_config
    from hyperzero.experts.trainer import GroupTrainer
    torch.set_num_threads(threads)
    seed = 1000
    cfg = profile_config(profile, train_steps=seed + steps, seed_steps=seed, random_steps=seed, eval_every=0,
                         eval_episodes=1, checkpoint_every=0, precision=precision, torch_threads=threads,
                         device=device)
    speeds = (10, -10, 5, -5, 3, -3, 8, -8) if n <= 8 else np.linspace(-10, 10, n)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = _tasks(Path(tmp), speeds[:n])
        trainer = GroupTrainer("cheetah-run", tasks, cfg, progress=False)
        stamps = []
        update = trainer.agent.update

        def timed(*a, **k):
            out = update(*a, **k)
            stamps.append(time.perf_counter())
            return out

        trainer.agent.update = timed
        trainer.evaluate = lambda episodes=None: [{"step": trainer.step, "return_mean": 0.0, "return_std": 0.0,
                                                   "returns": [0.0]}] * n  # not part of the measurement
        trainer.train()
    return (len(stamps) - 1) * n / (stamps[-1] - stamps[0])


def _sb3(steps: int, threads: int) -> float:
    import torch
    from stable_baselines3 import TD3
    from stable_baselines3.common.callbacks import BaseCallback

    from hyperzero.envs import make

    torch.set_num_threads(threads)
    start = 1000

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.t0 = self.t1 = None

        def _on_step(self) -> bool:
            if self.num_timesteps == start + 1:
                self.t0 = time.perf_counter()
            self.t1 = time.perf_counter()
            return True

    env = make("cheetah-run", {"speed": 10.0}, seed=0)
    model = TD3("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, batch_size=256, buffer_size=100_000,
                learning_starts=start, train_freq=1, gradient_steps=1, policy_delay=2, learning_rate=1e-4, tau=0.01,
                device="cpu", seed=0, verbose=0)
    clock = Clock()
    model.learn(total_timesteps=start + steps, callback=clock)
    return (steps - 1) / (clock.t1 - clock.t0)


def _memory(n: int, rows: int) -> dict:
    """Run in a fresh process: RSS of the ensemble + filled buffers + some updates."""
    import numpy as np

    from hyperzero.experts import TD3Config
    from hyperzero.experts.trainer import GroupTrainer

    def rss_mb(field: str = "VmRSS") -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

    base = rss_mb()
    cfg = TD3Config(train_steps=rows, eval_every=0, checkpoint_every=0, device="cpu", torch_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = _tasks(Path(tmp), np.linspace(1, 10, n))
        trainer = GroupTrainer("cheetah-run", tasks, cfg, progress=False)
        built = rss_mb()
        rb = trainer.replay
        for name in ("obs", "action", "reward", "not_done", "next_obs"):
            getattr(rb, name)[...] = 1.0  # touch every page, as a full buffer would
        rb.size = rb.capacity
        for t in range(20):
            trainer.agent.update(rb.sample(cfg.batch_size, [r.replay for r in trainer.agent.rngs]), t, t % 2 == 0)
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the (large) parent process.
        peak = rss_mb("VmHWM")
        replay_mb = sum(getattr(rb, k).nbytes for k in ("obs", "action", "reward", "not_done", "next_obs")) / 2**20
    return {"n": n, "rows": rows, "python+torch+dmc_mb": base, "after_build_mb": built, "peak_rss_mb": peak,
            "replay_arrays_mb": replay_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", default=["speed", "memory"], help="speed, memory and/or ensemble")
    p.add_argument("--steps", type=int, default=2000, help="measured env steps per config (after seeding)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every config")
    p.add_argument("--memory-rows", type=int, default=100_000, help="replay rows per member for the memory test")
    p.add_argument("--device", default=None, help="ensemble: cpu or cuda (default: cuda when torch sees one, else cpu)")
    p.add_argument("--profile", default="authors", help="ensemble: expert solver profile (authors | fast)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 64], help="ensemble: members per ensemble")
    p.add_argument("--precisions", nargs="+", default=["fp32"], help="ensemble: fp32 and/or bf16")
    p.add_argument("--_memory-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._memory_child:
        print(json.dumps(_memory(args._memory_child, args.memory_rows)))
        return
    import torch

    from hyperzero.utils.hardware import cpu_has_native_bf16, cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, native bf16: {cpu_has_native_bf16()}; torch "
          f"{torch.__version__}; load average before: {os.getloadavg()}; command: {' '.join(sys.argv)}")
    if "speed" in args.what:
        print("\n| config | torch threads | agent env-steps/s |\n|---|---|---|")
        rows = [("ours N=1 fp32", lambda: _ours(1, "fp32", args.steps, args.threads)),
                ("SB3 TD3 (same nets/batch/delay)", lambda: _sb3(args.steps, args.threads)),
                ("ours N=4 fp32", lambda: _ours(4, "fp32", max(args.steps // 2, 200), args.threads)),
                ("ours N=8 fp32", lambda: _ours(8, "fp32", max(args.steps // 4, 200), args.threads))]
        if cpu_has_native_bf16():  # elsewhere bf16 is emulated (~17x slower) and the trainer refuses it
            rows.append(("ours N=8 bf16", lambda: _ours(8, "bf16", max(args.steps // 4, 200), args.threads)))
        for name, fn in rows:
            print(f"| {name} | {args.threads} | {fn():.0f} |", flush=True)
    if "ensemble" in args.what:
        args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
        print(f"\nensemble: device {args.device} ({gpu}), profile {args.profile}\n\n"
              "| members | precision | torch threads | agent env-steps/s | ensemble steps/s |\n|---|---|---|---|---|")
        for precision in args.precisions:
            for n in args.sizes:
                rate = _ours(n, precision, max(args.steps // max(n // 8, 1), 200), args.threads, args.device,
                             args.profile)
                print(f"| {n} | {precision} | {args.threads} | {rate:.0f} | {rate / n:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if "memory" in args.what:
        print("\n| N | replay rows/member | replay arrays MB | RSS after build MB | peak RSS MB |\n|---|---|---|---|---|")
        for n in (1, 8):
            out = subprocess.run([sys.executable, __file__, "--_memory-child", str(n), "--memory-rows",
                                  str(args.memory_rows)], capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {n} | {m['rows']} | {m['replay_arrays_mb']:.0f} | {m['after_build_mb']:.0f} | "
                  f"{m['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
