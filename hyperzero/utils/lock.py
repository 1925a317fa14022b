"""One writer per run directory: an advisory lock that names its holder.

`hyperzero run`, `fit`, `experts train|collect` and `evaluate` hold `<dir>/.hyperzero.lock` while
they write into `<dir>`. A second command on the same directory, or on a directory inside or
around a locked one (e.g. `experts train --out RUN/experts` while `hyperzero run` owns RUN), is
refused with the holder's pid, host, start time and command. The lock is `flock(2)`: the kernel
releases it when the holder exits, however it exits (SIGKILL included), so there are no stale locks
to clean up (a command that finishes also deletes the file; one that was killed leaves an unlocked file). On a network filesystem flock is only as good as the filesystem's lock support.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".hyperzero.lock"
_HELD: dict[Path, int] = {}  # lock files held by this process -> fd


class RunDirBusyError(RuntimeError):
    """Another process is writing the directory. The message names it."""


def _holder_text(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode("utf-8"))
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}, command: "
                f"{info['command']}")
    except (ValueError, KeyError, TypeError):
        return "a process that is just starting (its details are not written yet)"


def _busy_message(directory: Path, lock_file: Path, raw: bytes) -> str:
    where = "" if lock_file.parent == directory else f" (it owns {lock_file.parent}, which overlaps {directory})"
    return (f"{directory} is being written by another hyperzero command{where}: {_holder_text(raw)}. "
            f"Wait for it to finish, stop it, or use another --out directory")


def _probe(lock_file: Path) -> bytes | None:
    """The holder's details if `lock_file` is locked by another process, else None."""
    if lock_file.resolve() in _HELD or not lock_file.is_file():
        return None
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _overlapping_locks(directory: Path) -> Iterator[Path]:
    """Lock files of the directories around (ancestors) and inside (two levels down) `directory`."""
    for parent in directory.parents:
        yield parent / LOCK_NAME
    yield from directory.glob(f"*/{LOCK_NAME}")
    yield from directory.glob(f"*/*/{LOCK_NAME}")


@contextmanager
def run_dir_lock(directory: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the directory's lock for the duration of the block; RunDirBusyError if another process has it."""
    from hyperzero.utils.io import ensure_directory

    directory = ensure_directory(directory).resolve()
    lock_file = directory / LOCK_NAME
    if lock_file in _HELD:  # re-entrant within one process (e.g. the pipeline calling a stage)
        yield lock_file
        return
    for other in _overlapping_locks(directory):
        raw = _probe(other)
        if raw is not None:
            raise RunDirBusyError(_busy_message(directory, other, raw))
    fd = _acquire(directory, lock_file)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command or " ".join(["hyperzero", *sys.argv[1:]])}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
    _HELD[lock_file] = fd
    try:
        yield lock_file
    finally:
        _HELD.pop(lock_file, None)
        try:  # removed while still held, so a finished command leaves nothing behind (see _acquire)
            os.unlink(lock_file)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(directory: Path, lock_file: Path) -> int:
    """Open and flock the lock file. The holder deletes it on release, so after locking, check that the
    path still names the file we locked (else another process deleted it meanwhile: start over)."""
    for _ in range(100):
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0)
            os.close(fd)
            raise RunDirBusyError(_busy_message(directory, lock_file, raw)) from None
        try:
            if os.stat(lock_file).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RunDirBusyError(f"{directory}: could not take {lock_file} (it keeps being replaced); try again")
