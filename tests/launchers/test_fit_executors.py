"""The fit stage on every executor fits the same models: one at a time, in parallel local processes, or as Ray
tasks on a real local Ray instance; a killed run leaves no fit process behind and resumes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperzero.utils.io import read_json

REPO = Path(__file__).resolve().parents[2]
ARGS = ["tiny", "--no-progress", "--set", "evaluate.videos=false", "--set", "fit.seeds=[0]"]
ENV = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}


def run(out: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "hyperzero", "run", *ARGS, "--out", str(out), *extra], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def refit_and_compare(tmp_path: Path, *extra: str) -> str:
    """Run tiny one fit at a time, then fit the same experts and dataset again with `extra`; the fits must agree."""
    serial = tmp_path / "serial"
    run(serial)  # tiny sets fit.num_workers=1
    other = tmp_path / "other"
    other.mkdir()
    for stage in ("experts", "dataset"):
        subprocess.run(["cp", "-a", str(serial / stage), str(other / stage)], check=True)
    out = run(other, *extra)
    fits = sorted(p.relative_to(serial) for p in serial.glob("fits/*/seed_*"))
    assert len(fits) == 2  # tiny's 2 methods x split seed 0
    for fit in fits:
        a, b = read_json(serial / fit / "done.json"), read_json(other / fit / "done.json")
        assert b["finished"]
        # one torch thread in both (tiny sets fit.num_threads=1): the same fit, whoever ran it
        assert (a["lr"], a["selected_step"]) == (b["lr"], b["selected_step"])
        assert b["final_val"] == pytest.approx(a["final_val"], rel=1e-4)
        assert read_json(other / fit / "split.json") == read_json(serial / fit / "split.json")
    assert (other / "eval" / "results.csv").exists()
    # rerun: every fit is found complete on disk, nothing is refitted
    assert "fits: all 2 fits complete and valid; skipped" in run(other, *extra)
    return out


@pytest.mark.slow
def test_parallel_local_fits_match_one_at_a_time(tmp_path):
    out = refit_and_compare(tmp_path, "--set", "fit.num_workers=2")
    assert "fits: 2 processes x 1 thread(s)" in out


@pytest.mark.slow
def test_ray_fits_match_local_fits(tmp_path):
    pytest.importorskip("ray")
    assert "executor=ray" in refit_and_compare(tmp_path, "--executor", "ray")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_killing_the_run_stops_its_fit_processes_and_the_rerun_finishes(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "hyperzero", "run", *ARGS, "--out", str(out), "--set", "fit.num_workers=2",
            "--set", "fit.steps=3000"]
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        # wait until both fits have written a checkpoint: their processes are running and have work to lose
        while len(list(out.glob("fits/*/seed_0/checkpoint.pt"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no fit checkpoint after 300 s"
            time.sleep(0.5)
        workers = children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGKILL)  # the run's process only, not its group: as when it is OOM-killed
        proc.wait()
        deadline = time.time() + 30
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.5)
        left = [w for w in workers if alive(w)]
        for w in left:
            os.kill(w, signal.SIGKILL)
        assert not left, "fit processes outlived the killed run"
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(read_json(f / "done.json")["finished"] for f in out.glob("fits/*/seed_0"))
