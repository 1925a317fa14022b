"""`hyperzero run --executor ray` fits on a real local Ray instance exactly what the local executor fits."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperzero.utils.io import read_json

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
ARGS = ["tiny", "--no-progress", "--set", "evaluate.videos=false", "--set", "fit.seeds=[0]"]


def run(out: Path, *extra: str) -> str:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "hyperzero", "run", *ARGS, "--out", str(out), *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_ray_fits_match_local_fits(tmp_path):
    local = tmp_path / "local"
    run(local)
    # The same experts and dataset, fitted again on Ray: only the fit stage differs between the two runs.
    remote = tmp_path / "ray"
    remote.mkdir()
    for stage in ("experts", "dataset"):
        subprocess.run(["cp", "-a", str(local / stage), str(remote / stage)], check=True)
    out = run(remote, "--executor", "ray")
    assert "executor=ray" in out
    fits = sorted(p.relative_to(local) for p in local.glob("fits/*/seed_*"))
    assert len(fits) == 2  # tiny's 2 methods x split seed 0
    for fit in fits:
        a, b = read_json(local / fit / "done.json"), read_json(remote / fit / "done.json")
        assert b["finished"]
        # one torch thread in both (tiny sets fit.num_threads=1): the same fit, whichever executor ran it
        assert (a["lr"], a["selected_step"]) == (b["lr"], b["selected_step"])
        assert b["final_val"] == pytest.approx(a["final_val"], rel=1e-4)
        assert read_json(remote / fit / "split.json") == read_json(local / fit / "split.json")
    assert (remote / "eval" / "results.csv").exists()
    # rerun: every fit is found complete on disk, nothing is refitted
    assert "fits: all 2 fits complete and valid; skipped" in run(remote, "--executor", "ray")
