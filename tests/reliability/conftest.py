"""One finished `tiny` run per test session; each test damages its own copy of it."""
import csv
import os
import shutil
from pathlib import Path

import pytest

# the tiny preset with one split seed, no figures or videos: every artifact kind, in as few seconds as possible
TINY_OVERRIDES = ["fit.seeds=[0]", "evaluate.videos=false", "evaluate.figures=false"]


def garble(path: Path) -> None:
    """Overwrite 64 bytes in the middle with different bytes (the file keeps its size)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    chunk = data[middle:middle + 64]
    data[middle:middle + len(chunk)] = bytes((b + 1 + i) % 256 for i, b in enumerate(chunk))
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE = {"garble": garble, "truncate": truncate, "empty": empty}


def read_results(run: Path) -> list[dict]:
    with open(run / "eval" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    from hyperzero.launchers.pipeline import Runtime, run_pipeline

    run = tmp_path_factory.mktemp("tiny") / "run"
    run_pipeline("tiny", run, TINY_OVERRIDES, runtime=Runtime(progress=False))
    return run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the finished tiny run (same absolute layout below tmp_path)."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    for lock in dst.rglob(".hyperzero.lock"):
        os.unlink(lock)
    return dst
