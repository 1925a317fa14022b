"""Atomic, checksummed file writes: a reader sees the old file or the complete new one, never half of one.

Every file written here gets a `<file>.sha256` sidecar (see `hyperzero.utils.integrity`), and the
readers here (`read_json`, `load_torch`) check it, so a file damaged after it was written is
reported by name (`CorruptFileError`) instead of being used.
"""
from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hyperzero.utils.integrity import CorruptFileError, read_verified_bytes, verify

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


def write_file_atomically(path: str | os.PathLike, data: bytes, checksum: bool = False) -> Path:
    """Write `data` to a temporary file beside `path`, fsync, rename; with `checksum`, record its sha256.

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
        if checksum:
            from hyperzero.utils.integrity import replace_with_checksum

            replace_with_checksum(path, data, lambda: os.replace(tmp, path))
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in _FULL and not isinstance(e, DiskFullError):
            raise _disk_full(path, len(data), e) from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomic write with a recorded checksum (`<path>.sha256`)."""
    return write_file_atomically(path, data, checksum=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


class CorruptJSONError(CorruptFileError, json.JSONDecodeError):
    """A JSON file that fails its checksum or does not parse; catchable as either (the message names the file)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        CorruptFileError.__init__(self, path, reason)
        self.msg, self.doc, self.pos, self.lineno, self.colno = reason, "", 0, 1, 1


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file, checked against its recorded checksum when it has one; errors name the file."""
    try:
        data = read_verified_bytes(path)
    except CorruptFileError as e:
        raise CorruptJSONError(e.path, e.reason) from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptJSONError(path, f"not valid JSON ({e})") from None


def load_torch(path: str | os.PathLike, **kwargs: Any) -> Any:
    """`torch.load(path, **kwargs)` after checking the file against its recorded checksum.

    A damaged file raises CorruptFileError naming it; a file that fails to unpickle raises it too.
    """
    import torch

    path = Path(path)
    verify(path)
    try:
        return torch.load(path, **kwargs)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever torch raises on a damaged archive, name the file
        raise CorruptFileError(path, f"is not a readable torch file ({type(e).__name__}: {e})") from None


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file so that `dst` is the old file or the complete copy, never a partial one."""
    return atomic_write_bytes(dst, read_verified_bytes(src))  # a damaged source is not copied
