"""Train / validation / test splits over task ids, one split per seed.

`paper`   : 85 % train, 15 % test (original-code-notes §4.2: `int(0.15 * n)` test tasks, floored).
`hypogen` : 20 % train, 80 % test (few training tasks: the harder generalisation protocol).

Seed k gives split k: the SORTED task ids are shuffled with `numpy.random.default_rng(k)`, the first
`n_test` of them are the test tasks. Validation tasks are then carved out of the train tasks (never
the test tasks: the original selected checkpoints on test loss, original-code-notes §7.2 item 3).
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


@dataclass
class Split:
    """One split of a dataset's tasks. Lists are sorted; the three sets are disjoint."""

    train: list[str]                 # task ids the model is fitted on
    val: list[str]                   # task ids for model selection / early stopping (subset carved from train)
    test: list[str]                  # held-out task ids, only ever used for the final evaluation
    seed: int = 0                    # split seed k (also recorded so split.json is self-describing)
    protocol: str = "paper"          # "paper" or "hypogen"
    val_fraction: float = 0.15       # fraction of the non-test tasks moved to val
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


def make_split(task_ids: Iterable[str], seed: int, protocol: Protocol = "paper", val_fraction: float = 0.15) -> Split:
    """Split `task_ids` into train/val/test deterministically from `seed` (see module doc).

    n_test = floor(test_fraction * n) but at least 1; at least one train task must remain.
    n_val = round(val_fraction * n_trainval), at least 1 when there are >= 3 non-test tasks, and
    always leaving at least one train task. val_fraction=0 gives no validation tasks.
    """
    if protocol not in TEST_FRACTION:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {sorted(TEST_FRACTION)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(set(task_ids))
    n = len(ids)
    if n < 2:
        raise ValueError(f"a split needs at least 2 tasks (one train, one test); got {n}: {ids}")
    n_test = max(1, int(TEST_FRACTION[protocol] * n))
    n_test = min(n_test, n - 1)  # keep at least one train task
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ids[i] for i in order]
    test, rest = shuffled[:n_test], shuffled[n_test:]
    n_val = 0
    if val_fraction > 0 and len(rest) >= 3:
        n_val = min(max(1, int(round(val_fraction * len(rest)))), len(rest) - 1)
    val, train = rest[:n_val], rest[n_val:]
    split = Split(train=sorted(train), val=sorted(val), test=sorted(test), seed=int(seed), protocol=protocol,
                  val_fraction=float(val_fraction))
    split.check()
    return split
