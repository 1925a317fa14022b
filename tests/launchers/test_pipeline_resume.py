"""`hyperzero run tiny` survives SIGKILL inside and between stages, and redoes corrupt stage outputs.

Everything is real (TD3 experts, dataset, fits, rollouts) at the `tiny` preset's minimal budgets.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARGS = ["tiny", "--no-progress", "--set", "fit.seeds=[0]", "--set", "evaluate.videos=false"]


def start(run: Path) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hyperzero", "run", *ARGS, "--out", str(run)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL the run (its whole process group) as soon as `ready()` holds; False if it finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    pytest.fail("the run neither reached the kill point nor finished in time")


def finish(run: Path) -> str:
    proc = start(run)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def results(run: Path) -> list[dict]:
    with open(run / "eval" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_run_resumes_and_corrupt_outputs_are_redone(tmp_path):
    run = tmp_path / "run"
    # 1. killed inside the experts stage (first checkpoint written)
    kill_when(start(run), lambda: any(run.glob("experts/*/checkpoint.pt")))
    assert not (run / "dataset" / "manifest.json").exists()
    # 2. killed between stages / inside the fit stage (a fit directory appears)
    kill_when(start(run), lambda: any(run.glob("fits/*/seed_0/run_info.json")))
    expert_mtimes = {p: p.stat().st_mtime for p in run.glob("experts/*/expert.pt")}
    assert len(expert_mtimes) == 3
    # 3. resume to the end: experts are not retrained, every stage completes
    out = finish(run)
    assert "experts: all 3 experts finished and valid; skipped" in out
    assert {p: p.stat().st_mtime for p in run.glob("experts/*/expert.pt")} == expert_mtimes
    rows = results(run)
    assert {r["method"] for r in rows} == {"hyperzero", "context_blind"}
    assert (run / "report.html").exists() and (run / "config.yaml").exists() and (run / "run_info.json").exists()
    # every invocation is timed; the finished one per stage, with the machine's load at each stage's end
    invocations = json.loads((run / "stage_times.json").read_text())
    assert len(invocations) == 3
    last = invocations[-1]
    assert set(last["seconds"]) >= {"experts", "dataset", "fits", "eval", "total"}
    assert set(last["load_average"]) >= {"experts", "dataset", "fits", "eval"}
    assert all(len(load) == 3 and min(load) >= 0 for load in last["load_average"].values())
    report = (run / "report.md").read_text()
    assert f"/ {os.cpu_count()} |" in report  # the report's load column
    # CPU time per expert and per fit, counted across the kills and resumes, and summed in the report
    for record in [*run.glob("experts/*/summary.json"), *run.glob("fits/*/seed_*/done.json")]:
        assert json.loads(record.read_text())["cpu_seconds"] > 0, record
    assert "CPU time" in report and "over 3 expert attempts" in report

    # 4. corrupt outputs: an expert without expert.pt, a fit whose model.pt is garbage; the rest is skipped
    broken_expert = sorted(run.glob("experts/*/expert.pt"))[0]
    broken_expert.unlink()
    broken_fit = run / "fits" / "hyperzero" / "seed_0" / "model.pt"
    broken_fit.write_bytes(b"not a torch file")
    out = finish(run)
    assert "expert.pt is missing" in out and "fits/hyperzero/seed_0: model.pt: content does not match the sha256" in out
    assert "experts: 2/3 finished" in out
    # the retrained expert's dataset task is recollected unless the retrained expert.pt is byte-identical
    assert ("dataset: complete and valid" in out) != ("collected from an expert that has since been retrained" in out)
    assert list((run / "corrupt").glob(f"experts__{broken_expert.parent.name}-*"))
    assert list((run / "corrupt").glob("fits__hyperzero__seed_0-*"))
    assert broken_expert.exists()  # retrained
    from hyperzero.training import load_fit

    load_fit(broken_fit.parent)  # refitted and loadable
    assert {r["method"] for r in results(run)} == {"hyperzero", "context_blind"}


def test_corrupt_dataset_is_detected(tmp_path):
    from hyperzero.datasets.outputs import dataset_check

    d = tmp_path / "dataset"
    d.mkdir()
    (d / "manifest.json").write_text("{not json")
    check = dataset_check(d, {"a"}, 1)
    assert "fails validation" in check.reason and check.state == "damaged" and check.bucket == "corrupt"
    check = dataset_check(tmp_path / "missing", {"a"}, 1)
    assert check.state == "missing" and check.bucket is None
