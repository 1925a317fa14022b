"""Written files follow the umask; a full disk names the file; a file in the way of a directory is named;
a dead worker (Ray or local process) ends the run with one line saying what died and how to resume."""
import errno
import os
import stat

import pytest

from hyperzero.utils.io import (DiskFullError, atomic_torch_save, atomic_write_json, atomic_write_text,
                                current_umask, file_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_written_files_and_their_checksums_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask and file_mode() == mode
    for path in (atomic_write_json(tmp_path / "a.json", {"x": 1}), atomic_torch_save({"x": 1}, tmp_path / "m.pt"),
                 atomic_write_text(tmp_path / "sub" / "t.txt", "x")):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
        sidecar = path.with_name(path.name + ".sha256")
        assert stat.S_IMODE(sidecar.stat().st_mode) == mode, sidecar


def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = atomic_write_json(tmp_path / "summary.json", {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("hyperzero.utils.io.os.fsync", full)
    with pytest.raises(DiskFullError) as info:
        atomic_write_json(target, {"new": True})
    text = str(info.value)
    assert str(target) in text and "No space left on device" in text and "rerun the same command" in text
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    from hyperzero.utils.io import read_json

    assert read_json(target) == {"old": True}  # still verifies against its checksum
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_file_where_a_directory_should_be_is_named(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for target in (blocker / "x.npz", blocker / "deeper" / "x.npz"):
        with pytest.raises(ValueError, match=f"cannot write {target}: {blocker} is a regular file, not a directory"):
            atomic_write_text(target, "x")


def test_a_crashed_ray_worker_is_one_line_naming_what_died():
    import ray.exceptions as rx

    from hyperzero.utils.ray_local import WorkerDiedError, worker_died

    died = worker_died(rx.WorkerCrashedError(), "training ensemble a, b")
    assert isinstance(died, WorkerDiedError) and isinstance(died, RuntimeError)
    text = str(died)
    assert "\n" not in text and "training ensemble a, b" in text and "WorkerCrashedError" in text
    assert "rerun the same command to resume" in text
    assert worker_died(ValueError("bad"), "x") is None  # a task's own error keeps its type and message


def test_run_ray_turns_a_lost_worker_into_one_line(tmp_path, monkeypatch):
    import ray
    import ray.exceptions as rx

    from hyperzero.experts import sweep
    from hyperzero.experts.trainer import TaskSpec
    from hyperzero.utils.ray_local import WorkerDiedError

    from tests.experts.helpers import tiny

    monkeypatch.setattr("hyperzero.utils.ray_local.start_ray", lambda address: False)

    class Remote:
        def remote(self, *args):
            return "ref"

    monkeypatch.setattr(ray, "remote", lambda **kw: lambda fn: Remote())
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns: (refs[:1], refs[1:]))

    def get(ref):
        raise rx.WorkerCrashedError()

    monkeypatch.setattr(ray, "get", get)
    run = sweep._Run([TaskSpec("speed=2", {"speed": 2.0}, 2, tmp_path / "t")], False, [])
    with pytest.raises(WorkerDiedError, match="a Ray worker died while training ensemble speed=2 "
                                              "\\(WorkerCrashedError: The worker died unexpectedly.*rerun the same"):
        sweep._run_ray("cheetah-run", [run], tiny(), None, progress=False)


def test_a_killed_local_worker_is_one_line_naming_what_died(tmp_path, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from hyperzero.experts import sweep
    from hyperzero.experts.trainer import TaskSpec
    from hyperzero.utils.ray_local import WorkerDiedError

    from tests.experts.helpers import tiny

    class Pool:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def shutdown(self, wait=True, cancel_futures=False):
            pass

        def submit(self, *args):
            f = Future()
            f.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            return f

    monkeypatch.setattr("hyperzero.utils.workers.ProcessPoolExecutor", Pool)
    run = sweep._Run([TaskSpec("speed=2", {"speed": 2.0}, 2, tmp_path / "t")], False, [])
    with pytest.raises(WorkerDiedError, match="a worker process died while training ensemble speed=2 .*rerun the same"):
        sweep._run_processes("cheetah-run", [run, run], tiny(), 2, progress=False)
