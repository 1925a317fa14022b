"""Learning curves written twice: a CSV for scripts and TensorBoard for eyes."""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Mapping


class CurveLogger:
    """Appends rows of scalars to `<dir>/<name>.csv` and to TensorBoard under `<dir>/tb`.

    Resume-safe: reopening appends, and rows at or before `resume_step` are dropped from the CSV
    first so that a run resumed from a checkpoint does not log the same steps twice.
    """

    def __init__(self, directory: str | Path, name: str = "progress", tensorboard: bool = True,
                 resume_step: int | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{name}.csv"
        self._fields: list[str] | None = None
        if self.path.exists():
            try:
                with open(self.path, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
                steps = [float(r.get("step") or 0) for r in rows]
            except (ValueError, csv.Error) as e:  # a damaged curve must not stop a resume: keep it aside, start over
                aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(self.path, aside)
                print(f"{self.path}: unreadable ({type(e).__name__}); moved to {aside.name}, the curve starts afresh",
                      file=sys.stderr)
                rows, steps = [], []
            if rows:
                self._fields = list(rows[0].keys())
            if resume_step is not None:
                rows = [r for r, step in zip(rows, steps) if step <= resume_step]
                with open(self.path, "w", newline="") as f:
                    if self._fields:
                        w = csv.DictWriter(f, fieldnames=self._fields)
                        w.writeheader()
                        w.writerows(rows)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tb"))
            except Exception:  # tensorboard is optional at run time
                self._tb = None

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        try:
            self._log(step, scalars)
        except OSError as e:  # a full disk names the file (the curve is diagnostics, but the run must stop cleanly)
            from hyperzero.utils.atomic import _FULL, DiskFullError

            if e.errno in _FULL and not isinstance(e, DiskFullError):
                raise DiskFullError(e.errno, f"{os.strerror(e.errno)} while writing {self.path}; free space on that "
                                             "device (or use another --out), then rerun the same command to resume"
                                    ) from None
            raise

    def _log(self, step: int, scalars: Mapping[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        if self._fields is None:
            self._fields = list(row.keys())
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields).writeheader()
        new = [k for k in row if k not in self._fields]
        if new:  # a new metric appeared: rewrite the header, keep old rows
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self._fields += new
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self._fields)
                w.writeheader()
                w.writerows(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields).writerow(row)
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
