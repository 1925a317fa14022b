"""How the local executor should run a pipeline's fits: one at a time with every core, or one process per core.

Takes a finished run (its experts/ and dataset/), copies them into one fresh folder per configuration, and runs
only the fit stage there (`hyperzero run <config.yaml> --stop-after fits`) with each `fit.num_workers`, one
configuration after the other on the same cores; prints a markdown table of the stage's wall time and the
fits' selected validation returns (the same fits up to float rounding, so the returns should agree).

    flock /tmp/hyperzero-bench.lock .venv/bin/python benchmarks/fit_workers.py $HOME/hz-runs/qs \\
        --out $HOME/hz-runs/fit-workers --methods hyperzero mlp_policy --workers 1 2

Run it on an otherwise idle machine. Results: docs/pipeline.md (Fits on one machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder with finished experts/ and dataset/ and its config.yaml")
    p.add_argument("--out", type=Path, required=True, help="one subfolder per configuration is (re)created here")
    p.add_argument("--methods", nargs="+", default=["hyperzero", "mlp_policy"], help="methods to fit")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="fit.num_workers values to compare")
    args = p.parse_args()

    from hyperzero.utils.hardware import cpu_model

    rows = []
    load_before = os.getloadavg()
    for workers in args.workers:
        dest = args.out / f"workers-{workers}"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for part in ("experts", "dataset"):
            shutil.copytree(args.run / part, dest / part, symlinks=True)
        cmd = [sys.executable, "-m", "hyperzero", "run", str(args.run / "config.yaml"), "--out", str(dest),
               "--stop-after", "fits", "--no-progress", "--set", f"fit.num_workers={workers}",
               "--set", "fit.methods=[" + ",".join(args.methods) + "]"]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "MUJOCO_GL": "egl"},
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        done = [json.loads(f.read_text()) for f in sorted(dest.glob("fits/*/seed_*/done.json"))]
        val = [d.get("selection_score") for d in done]
        rows.append((workers, wall, len(done), val))
    load_after = os.getloadavg()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}; methods {args.methods}\n")
    print("| fit.num_workers | fits | fit stage wall (s, incl. start-up) | mean selection score (validation return) |")
    print("|---|---|---|---|")
    for workers, wall, n, val in rows:
        known = [v for v in val if v is not None]
        mean = f"{sum(known) / len(known):.1f}" if known else "–"
        print(f"| {workers} | {n} | {wall:.0f} | {mean} |")


if __name__ == "__main__":
    main()
