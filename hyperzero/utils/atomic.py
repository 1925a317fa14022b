"""Atomic file writes with nothing above them: a reader sees the old file or the complete new one.

The bottom of `hyperzero.utils`: `integrity` (checksum sidecars) and `io` (checksummed readers and writers) both
build on it, and it imports neither.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

# errno values that mean "the device cannot take more data": reported with the path being written and the fix
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class DiskFullError(OSError):
    """A write failed because the device (or the user's quota) is full. The message names the file."""


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere set and restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0o666 minus the umask (tempfile makes 0o600)."""
    return 0o666 & ~current_umask()


def ensure_directory(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create `path` (and its parents) as a directory; a clear ValueError if something in the way is a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is" if p == path else f"(a parent of {path}) is"
                raise ValueError(f"{what} {path}: {p} {where} a regular file, not a directory; choose a path "
                                 f"that is (or can be created as) a directory")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError as e:
        raise ValueError(f"{what} {path}: cannot create it ({e.strerror}); choose a directory you can write to") from None
    return path


def _make_parent(path: Path) -> None:
    """Create `path`'s directory; a ValueError naming the culprit when a component of it is a regular file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for p in (path.parent, *path.parent.parents):
            if p.exists() and not p.is_dir():
                raise ValueError(f"cannot write {path}: {p} is a regular file, not a directory; choose a path whose "
                                 f"directories are (or can be created as) directories") from None
        raise


def _disk_full(path: Path, size: int, e: OSError) -> DiskFullError:
    return DiskFullError(e.errno, f"{os.strerror(e.errno)} while writing {path} ({size} bytes); free space on that "
                                  f"device (or use another --out), then rerun the same command to resume")


def write_file_atomically(path: str | os.PathLike, data: bytes, install: Callable[[str], None] | None = None) -> Path:
    """Write `data` to a temporary file beside `path`, fsync, rename (or hand the temporary file's name to
    `install`, which renames it into place: how `hyperzero.utils.io` records a checksum around the rename).

    The file gets the mode a plain write would (0o666 minus the umask), not tempfile's 0o600, so a run
    directory shared through a group-readable umask stays readable. A full disk raises DiskFullError (an
    OSError) naming `path`; the temporary file is removed and the previous `path`, if any, is untouched."""
    path = Path(path)
    _make_parent(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if install is not None:
            install(tmp)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in _FULL and not isinstance(e, DiskFullError):
            raise _disk_full(path, len(data), e) from None
        raise
    return path
