"""Atomic, checksummed file writes: a reader sees the old file or the complete new one, never half of one.

Every file written here gets a `<file>.sha256` sidecar (see `hyperzero.utils.integrity`), and the
readers here (`read_json`, `load_torch`) check it, so a file damaged after it was written is
reported by name (`CorruptFileError`) instead of being used.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hyperzero.utils.atomic import DiskFullError, current_umask, ensure_directory, file_mode  # noqa: F401 (re-exported)
from hyperzero.utils.atomic import write_file_atomically as _write
from hyperzero.utils.integrity import CorruptFileError, read_verified_bytes, replace_with_checksum, verify

def write_file_atomically(path: str | os.PathLike, data: bytes, checksum: bool = False) -> Path:
    """Write `data` atomically (`hyperzero.utils.atomic`); with `checksum`, record its sha256 in `<path>.sha256`
    around the rename, kill-safe (`hyperzero.utils.integrity`)."""
    if not checksum:
        return _write(path, data)
    path = Path(path)
    return _write(path, data, install=lambda tmp: replace_with_checksum(path, data, lambda: os.replace(tmp, path)))


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
