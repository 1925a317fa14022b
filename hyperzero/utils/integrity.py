"""Checksums of the files a rerun trusts, and what to do with a file that fails them.

Every file written through `hyperzero.utils.io` (atomic writes) gets a sidecar `<file>.sha256` in the
format of `sha256sum` (`<hex>  <name>`), so `sha256sum -c model.pt.sha256` checks it by hand too.
The sidecar is written *before* the file is renamed into place and names both the new content and,
while the replacement is in flight, the previous one (`# previous <hex>`); once the new file is in
place the sidecar is rewritten with the new checksum alone. So a process killed at any instant
leaves a file that matches its sidecar (the old or the new content), and a file that matches
neither was damaged after it was written: a reader that trusts it gets `CorruptFileError`, which
names the file, instead of garbage.

A file without a sidecar (written by an older hyperzero, or by hand) is *unverified*: `verify`
returns None for it and the caller decides (the pipeline checks that it loads, then records a
checksum so that from then on it is protected).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from hyperzero.utils.atomic import write_file_atomically

SUFFIX = ".sha256"
_PREVIOUS = "# previous "
_CHUNK = 1 << 20


class CorruptFileError(ValueError):
    """A file is damaged (checksum mismatch, truncated, unparsable). The message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        ValueError.__init__(self, f"{self.path}: {reason}")

    def __reduce__(self):  # pickled as (path, reason): a worker process's error reaches its parent intact
        return type(self), (self.path, self.reason)


def checksum_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_hex_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def recorded_checksums(path: str | os.PathLike) -> list[str] | None:
    """The checksums the sidecar accepts (current first, then a previous one while a write is in flight).

    None when there is no sidecar; CorruptFileError when the sidecar itself is damaged.
    """
    side = checksum_path(path)
    try:
        text = side.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(side, f"checksum file unreadable ({e})") from None
    hashes = []
    for line in text.splitlines():
        digest = line[len(_PREVIOUS):].strip() if line.startswith(_PREVIOUS) else line.split(" ", 1)[0]
        if not _is_hex_digest(digest):
            raise CorruptFileError(side, "checksum file is damaged (expected '<sha256 hex>  <name>' lines)")
        hashes.append(digest)
    if not hashes:
        raise CorruptFileError(side, "checksum file is empty")
    return hashes


def _write_sidecar(path: Path, digest: str, previous: str | None) -> None:
    text = f"{digest}  {path.name}\n" + (f"{_PREVIOUS}{previous}\n" if previous and previous != digest else "")
    write_file_atomically(checksum_path(path), text.encode("ascii"))


def replace_with_checksum(path: Path, data: bytes, replace) -> None:
    """Record the checksum of `data`, call `replace()` (which renames the new file into `path`), confirm.

    Kill-safe: see the module docstring.
    """
    digest = sha256_bytes(data)
    previous = None
    if path.exists():
        hashes = recorded_checksums_or_none(path)
        previous = hashes[0] if hashes is not None and len(hashes) == 1 else sha256_file(path)
    _write_sidecar(path, digest, previous)
    replace()
    if previous and previous != digest:
        _write_sidecar(path, digest, None)


def recorded_checksums_or_none(path: Path) -> list[str] | None:
    try:
        return recorded_checksums(path)
    except CorruptFileError:
        return None


def record_checksum(path: str | os.PathLike) -> str:
    """Record the checksum of an existing file as it is now (adopting a file written without one)."""
    path = Path(path)
    digest = sha256_file(path)
    _write_sidecar(path, digest, None)
    return digest


def verify(path: str | os.PathLike, required: bool = False) -> str | None:
    """The file's sha256 when it matches its sidecar; None when it has no sidecar and not `required`.

    Raises FileNotFoundError for a missing file and CorruptFileError for a damaged one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return _check(path, sha256_file(path), required)


def read_verified_bytes(path: str | os.PathLike, required: bool = False) -> bytes:
    """The file's bytes, read once and checked against its sidecar (see `verify`)."""
    path = Path(path)
    data = path.read_bytes()
    _check(path, sha256_bytes(data), required)
    return data


def _check(path: Path, actual: str, required: bool) -> str | None:
    hashes = recorded_checksums(path)
    if hashes is None:
        if required:
            raise CorruptFileError(path, f"no checksum recorded ({checksum_path(path).name} is missing), so its "
                                         f"content cannot be trusted")
        return None
    if actual not in hashes:
        raise CorruptFileError(path, f"content does not match the sha256 recorded when it was written "
                                     f"({path.stat().st_size} bytes now); the file was damaged or edited afterwards")
    return actual


def fingerprint(path: str | os.PathLike) -> str:
    """The file's checksum, from its sidecar when it has a confirmed one (cheap), else computed."""
    hashes = recorded_checksums_or_none(Path(path))
    if hashes is not None and len(hashes) == 1:
        return hashes[0]
    return sha256_file(path)


def move_aside(root: str | os.PathLike, path: str | os.PathLike, bucket: str = "corrupt") -> Path:
    """Move `path` (a file with its sidecar, or a directory) to `<root>/<bucket>/<relative path>-<time>`.

    Nothing is deleted: the damaged file stays there for inspection. Returns the new location.
    """
    root, path = Path(root), Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = path.name
    base = root / bucket / f"{rel.replace('/', '__')}-{stamp}"
    target, n = base, 1
    while target.exists():
        target, n = base.with_name(f"{base.name}.{n}"), n + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    side = checksum_path(path)
    shutil.move(str(path), str(target))
    if path.suffix != SUFFIX and side.exists():
        shutil.move(str(side), str(checksum_path(target)))
    return target


def damaged_files(directory: str | os.PathLike) -> list[tuple[Path, str]]:
    """(file, reason) for every file under `directory` whose checksum does not match (recursive)."""
    out = []
    directory = Path(directory)
    if not directory.is_dir():
        return out
    for side in sorted(directory.rglob(f"*{SUFFIX}")):
        path = side.with_name(side.name[:-len(SUFFIX)])
        if not path.exists():
            continue  # a write killed before its rename: the sidecar of a file that never appeared
        try:
            verify(path, required=True)
        except CorruptFileError as e:
            out.append((path, e.reason))
    return out


def remove_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete `.<name>.<random>.tmp` files that a killed atomic write left under `directory`.

    Only call this while holding the directory's lock (no other writer can be mid-write).
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for tmp in directory.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
