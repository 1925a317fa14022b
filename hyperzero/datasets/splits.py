"""Train / validation / test splits over task ids, one split per seed.

`paper`   : 15 % of the tasks are test tasks (the authors' `int(0.15 * n)`, floored), but at least
            `min_test_tasks` (default 3) when enough tasks remain to train on: with 8-12 tasks the
            authors' rule holds out a single task, and a "± std over seeds" is then the spread over
            five different tasks rather than an estimate of anything.
`hypogen` : 80 % test tasks (HyPoGen, ICLR 2025: `int(0.8 * n)` test tasks, the next `int(0.2 * n)`
            train tasks; the remainder, if any, is unused there and becomes validation here).

Seed k gives split k: the SORTED task ids are shuffled with `numpy.random.default_rng(k)` (the same
order as the authors' and HyPoGen's `rng.shuffle` of a sorted list), the first `n_test` of them are
the test tasks. Validation tasks are then carved out of the remaining tasks (never the test tasks:
the original selected checkpoints on test loss). Tasks listed in `never_test` (e.g. those whose
expert failed its quality check, so no score can be computed on them) are moved behind the others
before the test tasks are taken, so they are only held out when nothing else is left.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from hyperzero.utils.io import atomic_write_json, read_json

Protocol = Literal["paper", "hypogen"]

TEST_FRACTION: dict[str, float] = {"paper": 0.15, "hypogen": 0.80}  # fraction of all tasks held out as test
MIN_TEST_TASKS = 3      # default floor on the number of test tasks (kept only while >= MIN_TRAINVAL_TASKS remain)
MIN_TRAINVAL_TASKS = 2  # the floor never leaves fewer non-test tasks than this


@dataclass
class Split:
    """One split of a dataset's tasks. Lists are sorted; the three sets are disjoint."""

    train: list[str]                 # task ids the model is fitted on
    val: list[str]                   # task ids for model selection / early stopping (subset carved from train)
    test: list[str]                  # held-out task ids, only ever used for the final evaluation
    seed: int = 0                    # split seed k (also recorded so split.json is self-describing)
    protocol: str = "paper"          # "paper" or "hypogen"
    val_fraction: float = 0.15       # fraction of the non-test tasks moved to val
    test_fraction: float | None = None  # fraction of tasks held out (None: the protocol's, TEST_FRACTION)
    min_test_tasks: int = MIN_TEST_TASKS  # floor on the number of test tasks (see make_split)
    extra: dict = field(default_factory=dict)  # free-form notes, e.g. the dataset path

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the split; also written atomically to `path` when given."""
        obj = asdict(self)
        if path is not None:
            atomic_write_json(path, obj)
        return json.dumps(obj, indent=2)

    @classmethod
    def from_json(cls, source: str | Path) -> "Split":
        """Read a split from a JSON file path or from JSON text."""
        text_given = isinstance(source, str) and source.lstrip().startswith("{")
        where = "<json text>" if text_given else str(source)
        try:
            obj = json.loads(source) if text_given else read_json(source)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{where}: cannot read split ({e}); regenerate it with make_split") from e
        missing = [k for k in ("train", "val", "test") if k not in obj]
        if missing:
            raise ValueError(f"{where}: split is missing {missing}; regenerate it with make_split")
        split = cls(**{k: v for k, v in obj.items() if k in cls.__dataclass_fields__})
        split.check()
        return split

    def check(self) -> None:
        """Raise ValueError if the sets overlap or train/test is empty."""
        tr, va, te = set(self.train), set(self.val), set(self.test)
        leaks = (tr & te) | (va & te) | (tr & va)
        if leaks:
            raise ValueError(f"split overlaps on tasks {sorted(leaks)}: train, val and test must be disjoint")
        if not tr or not te:
            raise ValueError(f"split needs at least one train and one test task (got {len(tr)} train, {len(te)} test)")

    @property
    def all(self) -> list[str]:
        return sorted(self.train + self.val + self.test)


def test_count(n: int, protocol: Protocol = "paper", test_fraction: float | None = None,
               min_test_tasks: int = MIN_TEST_TASKS) -> int:
    """Number of test tasks among n: floor(test_fraction * n), raised to `min_test_tasks` as long as at
    least MIN_TRAINVAL_TASKS non-test tasks remain, and always in [1, n - 1]."""
    fraction = TEST_FRACTION[protocol] if test_fraction is None else float(test_fraction)
    n_test = int(fraction * n)
    n_test = max(n_test, min(int(min_test_tasks), n - MIN_TRAINVAL_TASKS))
    return min(max(1, n_test), n - 1)


def make_split(task_ids: Iterable[str], seed: int, protocol: Protocol = "paper", val_fraction: float = 0.15,
               test_fraction: float | None = None, min_test_tasks: int = MIN_TEST_TASKS,
               never_test: Iterable[str] = ()) -> Split:
    """Split `task_ids` into train/val/test deterministically from `seed` (see module doc).

    n_test = `test_count(n, protocol, test_fraction, min_test_tasks)`; at least one train task remains.
    n_val = round(val_fraction * n_trainval), at least 1 when there are >= 3 non-test tasks, and
    always leaving at least one train task. val_fraction=0 gives no validation tasks. Tasks in
    `never_test` are test tasks only if the other tasks do not suffice.
    """
    if protocol not in TEST_FRACTION:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {sorted(TEST_FRACTION)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) or None for the protocol's, got {test_fraction}")
    if int(min_test_tasks) < 1:
        raise ValueError(f"min_test_tasks must be >= 1, got {min_test_tasks}")
    ids = sorted(set(task_ids))
    n = len(ids)
    if n < 2:
        raise ValueError(f"a split needs at least 2 tasks (one train, one test); got {n}: {ids}")
    n_test = test_count(n, protocol, test_fraction, min_test_tasks)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ids[i] for i in order]
    avoid = set(never_test)
    shuffled = [i for i in shuffled if i not in avoid] + [i for i in shuffled if i in avoid]  # stable
    test, rest = shuffled[:n_test], shuffled[n_test:]
    n_val = 0
    if val_fraction > 0 and len(rest) >= 3:
        n_val = min(max(1, int(round(val_fraction * len(rest)))), len(rest) - 1)
    val, train = rest[:n_val], rest[n_val:]
    split = Split(train=sorted(train), val=sorted(val), test=sorted(test), seed=int(seed), protocol=protocol,
                  val_fraction=float(val_fraction), test_fraction=test_fraction, min_test_tasks=int(min_test_tasks))
    split.check()
    return split
