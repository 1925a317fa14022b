"""One writer per run directory (two real processes), and what a kill leaves behind is not called corruption."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from hyperzero.utils.lock import run_dir_lock
with run_dir_lock(sys.argv[1], command="hyperzero run tiny --out " + sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process that holds tmp_path/run's lock until it is SIGKILLed."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield run, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(holder):
    run, proc = holder
    env = {**os.environ, "MUJOCO_GL": "egl"}
    second = subprocess.run([sys.executable, "-m", "hyperzero", "run", "tiny", "--out", str(run), "--no-progress"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert f"is being written by another hyperzero command: pid {proc.pid} on " in second.stderr
    assert f"command: hyperzero run tiny --out {run}" in second.stderr and "started 20" in second.stderr
    assert "Traceback" not in second.stderr
    assert not (run / "config.yaml").exists()  # the refused run wrote nothing


def test_overlapping_directories_are_refused_and_a_killed_holder_frees_the_lock(holder):
    from hyperzero.utils.lock import RunDirBusyError, run_dir_lock

    run, proc = holder
    with pytest.raises(RunDirBusyError, match=rf"\(it owns {run}, which overlaps {run / 'experts'}\).*pid {proc.pid}"):
        with run_dir_lock(run / "experts"):  # e.g. `hyperzero experts train --out RUN/experts` during `run`
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with run_dir_lock(run):  # the kernel released the lock with the process: nothing stale to clean up
        with run_dir_lock(run):  # and the same process may re-enter it
            pass


def test_a_kill_early_in_the_dataset_stage_is_resumed_not_called_corrupt(run_copy, capsys):
    """What SIGKILL leaves in the first moments of a collection: an empty manifest, a half-written temp file."""
    import shutil

    from hyperzero.datasets import DatasetWriter
    from hyperzero.datasets.outputs import dataset_check

    shutil.rmtree(run_copy / "dataset")
    writer = DatasetWriter(run_copy / "dataset", "cheetah-run", ["speed"])
    writer.close()  # the process died here: no task collected yet
    (run_copy / "dataset" / "tasks" / ".speed=2_torso_length=0.5.npz.x1y2.tmp").write_bytes(b"PK\x03")
    expected = {"speed=-4_torso_length=0.5", "speed=2_torso_length=0.5", "speed=4_torso_length=0.5"}
    check = dataset_check(run_copy / "dataset", expected, 1, run_copy / "experts", run_copy)
    assert check.state == "unfinished" and check.reason == "unfinished collection"
    assert not (run_copy / "corrupt").exists() and "corrupt" not in capsys.readouterr().err


def test_kill_between_a_files_checksum_and_its_rename_leaves_a_trusted_file(tmp_path):
    """The sidecar names the new content before the rename; until the rename the old content still verifies."""
    from hyperzero.utils.integrity import _write_sidecar, sha256_bytes, verify
    from hyperzero.utils.io import atomic_write_bytes

    path = tmp_path / "checkpoint.pt"
    atomic_write_bytes(path, b"old state")
    _write_sidecar(path, sha256_bytes(b"new state"), sha256_bytes(b"old state"))  # killed right after this
    assert verify(path, required=True) == sha256_bytes(b"old state")
    atomic_write_bytes(path, b"newer state")  # the next write starts from that state
    assert verify(path, required=True) == sha256_bytes(b"newer state")
    assert (tmp_path / "checkpoint.pt.sha256").read_text().count("\n") == 1  # confirmed: one checksum again
