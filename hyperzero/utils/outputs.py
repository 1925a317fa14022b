"""Whether a stage's output can be used as it is: one small record every stage's checks return.

Each stage package keeps its own rules next to the code that writes the outputs (`experts/outputs.py`,
`datasets/outputs.py`, `training/outputs.py`, `evaluation/outputs.py`); they all answer with an `OutputCheck`, so
the decision "resume it, keep it, or move it aside, and where to" is read from one field instead of a message.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hyperzero.utils.integrity import checksum_path, move_aside, record_checksum, recorded_checksums_or_none

State = Literal["ok", "missing", "unfinished", "damaged", "changed"]
STATES: tuple[State, ...] = ("ok", "missing", "unfinished", "damaged", "changed")
# Where an output that must be redone from scratch is kept for inspection: damaged files (a checksum or a load
# failed) and work made from inputs that changed since are told apart, so a user sees why each was redone.
BUCKETS: dict[str, str] = {"damaged": "corrupt", "changed": "stale"}
RESUME_STATE = ("checkpoint.pt", "best.pt")  # only needed while a unit (expert, fit) is unfinished


@dataclass(frozen=True)
class OutputCheck:
    """Whether one output (an expert folder, the dataset, a fit, the evaluation) can be used.

    ok: complete, intact and made from the current inputs. missing: nothing there yet. unfinished: partial work
    the stage resumes. damaged: cannot be trusted (moved to RUN/corrupt/, redone). changed: intact but made from
    inputs that changed since (moved to RUN/stale/, redone). `reason` says why, for the user."""

    state: State
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"OutputCheck state must be one of {STATES} (got {self.state!r})")

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def bucket(self) -> str | None:
        """The folder under the run directory the output is moved to before it is redone; None: keep it."""
        return BUCKETS.get(self.state)

    def set_aside(self, run_dir: Path, path: Path, reason: str | None = None) -> Path:
        """Move `path` into RUN/<bucket>/, saying why (`reason`, default this check's)."""
        if self.bucket is None:
            raise ValueError(f"a {self.state} output is kept, not moved aside ({path})")
        return set_aside(run_dir, path, self.reason if reason is None else reason, self.bucket)


OK = OutputCheck("ok")


def say(message: str) -> None:
    """One line on stderr, as every stage of `hyperzero run` reports what it reuses, redoes or moves."""
    print(f"[hyperzero run] {message}", file=sys.stderr, flush=True)


def rel(root: Path, path: Path) -> str:
    """`path` relative to `root` when it is inside it (for messages), else as given."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def set_aside(run_dir: Path, path: Path, reason: str, bucket: str = "corrupt") -> Path:
    """Move `path` into `run_dir/<bucket>/` (nothing is deleted) and say which file, why, and where it went."""
    target = move_aside(run_dir, path, bucket)
    say(f"{rel(run_dir, path)}: {reason}; moved to {rel(run_dir, target)}")
    return target


def adopt(path: Path) -> None:
    """Record a checksum for a file written before checksums existed, once it passed its structural check."""
    if path.is_file() and recorded_checksums_or_none(path) is None and not checksum_path(path).exists():
        record_checksum(path)
