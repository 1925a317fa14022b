"""Results tables: one row per (method, split seed, evaluated task), and their aggregates.

`results.csv` columns, in order:
    method, seed, task_id, <one column per context feature>, n_episodes, return_mean, return_std,
    expert_return, floor_return, score, normalized, excluded, role, position

* `return_mean` / `return_std`: mean and std of the undiscounted episode return over the evaluation
  episodes (the same episode seeds for every method, for the expert and for the floor).
* `expert_return`: the task's expert, rolled out on those same seeds.
* `floor_return`: the do-nothing policy (a = 0) on those same seeds.
* `score` = (return_mean - floor_return) / (expert_return - floor_return): 0 = no better than doing
  nothing, 1 = the expert (NaN when the expert is not above the floor).
* `normalized` = return_mean / expert_return, the paper's metric (NaN when the expert return is not
  positive). Kept for comparison only: with a reward floor of ~100 per episode it credits doing nothing,
  and a mean of ratios is dominated by the tasks whose expert is weakest.
* `excluded`: why the row is left out of the aggregates ("" when it is not), e.g. a flagged expert.
* `role`: "test" for a held-out task of the row's split (the transfer score: every held-out aggregate,
  figure and table uses these rows only), "train" for one of the split's training tasks (the cloning
  score: did the method learn to copy the experts it was trained on?).
* `position`: for a test row, "between" when the held-out context lies between training tasks of its
  split (in their convex hull over the varied features), "outside" when it does not (`context_position`); "" for
  train rows.
  Files written before these two columns existed read back as test rows with an empty position.

Aggregates: `hyperzero.evaluation.stats.aggregate` (IQM with stratified-bootstrap intervals and the
probability of improvement, via rliable). `summarize` below is the paper-style mean ± std over seeds.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hyperzero.utils.io import atomic_write_text

BASE_COLUMNS = ["method", "seed", "task_id"]
VALUE_COLUMNS = ["n_episodes", "return_mean", "return_std", "expert_return", "floor_return", "score", "normalized",
                 "excluded"]
OPTIONAL_COLUMNS = ["role", "position"]  # written last; absent from results.csv files written before them
ROLES = ("test", "train")
POSITIONS = ("between", "outside")


@dataclass
class ResultRow:
    method: str
    seed: int
    task_id: str
    context: dict[str, float]
    n_episodes: int
    return_mean: float
    return_std: float
    expert_return: float
    floor_return: float = float("nan")   # do-nothing policy on the same episode seeds
    excluded: str = ""                   # reason the row is left out of the aggregates, "" if it is not
    role: str = "test"                   # "test": a held-out task of the split; "train": one of its training tasks
    position: str = ""                   # test rows: "between" / "outside" the split's training tasks; "" otherwise

    @property
    def normalized(self) -> float:
        return normalized_return(self.return_mean, self.expert_return)

    @property
    def score(self) -> float:
        return floor_corrected_score(self.return_mean, self.expert_return, self.floor_return)


def normalized_return(return_mean: float, expert_return: float) -> float:
    """Return divided by the expert's return on the same episode seeds; NaN if the expert's is not positive."""
    if not expert_return > 0:
        return float("nan")
    return float(return_mean) / float(expert_return)


def floor_corrected_score(return_mean: float, expert_return: float, floor_return: float) -> float:
    """(R - R_floor) / (R_expert - R_floor); NaN unless the expert is above the floor."""
    span = float(expert_return) - float(floor_return)
    if not (math.isfinite(span) and span > 0):
        return float("nan")
    return (float(return_mean) - float(floor_return)) / span


def is_test(row) -> bool:
    """A held-out (transfer) row; rows without a role (read from an older file) are held-out rows."""
    return getattr(row, "role", "test") == "test"


def test_rows(rows: Iterable) -> list:
    """Only the held-out rows, in their order."""
    return [r for r in rows if is_test(r)]


def varying_features(contexts: Sequence[dict[str, float]], names: Sequence[str]) -> list[str]:
    """The features among `names` that take more than one value over `contexts` (the dataset's tasks)."""
    return [n for n in names if len({float(c[n]) for c in contexts if n in c}) > 1]


def signed_features(family: str | None, contexts: Sequence[dict[str, float]], names: Sequence[str]) -> list[str]:
    """Features among `names` whose sign is a direction (a target speed): those the family declares `nonzero`
    (a speed of 0 has no direction); a feature the family does not declare counts as signed when `contexts`
    hold both negative and positive values of it."""
    declared: dict = {}
    if family is not None:
        from hyperzero.envs import get_family

        declared = get_family(family).context_space.features
    out = []
    for n in names:
        if n in declared:
            if declared[n].nonzero:
                out.append(n)
        else:
            values = [float(c[n]) for c in contexts if n in c]
            if any(v < 0 for v in values) and any(v > 0 for v in values):
                out.append(n)
    return out


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def context_position(context: dict[str, float], train_contexts: Sequence[dict[str, float]],
                     features: Sequence[str], signed: Sequence[str] = ()) -> str:
    """"between" when the held-out context lies in the convex hull of the training contexts over `features` (those
    varied in the dataset), counting only the training contexts whose `signed` features have the same sign as the
    held-out context's (training speeds of the other direction are no neighbours); "outside" otherwise (also when
    no training context has the same signs). With one feature: training values on both sides of it, or at it. On a
    grid of two features a held-out point of an edge between two training tasks of that edge is between, a held-out
    corner is outside (each of its values alone has training tasks at it, the point has none beyond it)."""
    same = [c for c in train_contexts if all(_sign(float(c[s])) == _sign(float(context[s])) for s in signed)]
    if not same:
        return "outside"
    if not features:
        return "between"
    points = np.array([[float(c[f]) for f in features] for c in same])
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    scale = np.where(span > 0, span, 1.0)  # the unit box of the training tasks: one tolerance for every feature
    points, x = (points - low) / scale, (np.array([float(context[f]) for f in features]) - low) / scale
    if np.any(x < -1e-9) or np.any(x > 1 + 1e-9):
        return "outside"
    if len(features) == 1:
        return "between"
    from scipy.optimize import linprog

    # a convex combination of the training points that is the held-out point: weights >= 0 summing to 1
    fit = linprog(np.zeros(len(points)), A_eq=np.vstack([points.T, np.ones(len(points))]), b_eq=np.append(x, 1.0),
                  bounds=(0, None), method="highs")
    return "between" if fit.status == 0 else "outside"


def context_columns(rows: Iterable[ResultRow]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row.context:
            if name not in names:
                names.append(name)
    return names


def results_to_csv_text(rows: Sequence[ResultRow], context_names: Sequence[str] | None = None) -> str:
    names = list(context_names) if context_names is not None else context_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BASE_COLUMNS + names + VALUE_COLUMNS + OPTIONAL_COLUMNS)
    for r in rows:
        writer.writerow([r.method, r.seed, r.task_id] + [_fmt(r.context.get(n, float("nan"))) for n in names]
                        + [r.n_episodes, _fmt(r.return_mean), _fmt(r.return_std), _fmt(r.expert_return),
                           _fmt(r.floor_return), _fmt(r.score), _fmt(r.normalized), r.excluded, r.role, r.position])
    return buf.getvalue()


def write_results(path: str | Path, rows: Sequence[ResultRow], context_names: Sequence[str] | None = None) -> Path:
    return atomic_write_text(path, results_to_csv_text(rows, context_names))


def read_results(path: str | Path) -> list[ResultRow]:
    """Read `results.csv` back; any column that is not a base, value, role or position column is a context feature.
    A file written before the `role` and `position` columns existed reads as held-out rows with no position."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `hyperzero evaluate RUN_DIR` first")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in BASE_COLUMNS + VALUE_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; it was not written by hyperzero evaluate "
                             "(delete it and rerun the evaluation)")
        known = BASE_COLUMNS + VALUE_COLUMNS + OPTIONAL_COLUMNS
        ctx_names = [c for c in header if c not in known]
        rows = []
        for line_no, rec in enumerate(reader, start=2):
            try:
                rows.append(ResultRow(method=rec["method"], seed=int(rec["seed"]), task_id=rec["task_id"],
                                      context={n: float(rec[n]) for n in ctx_names},
                                      n_episodes=int(rec["n_episodes"]), return_mean=float(rec["return_mean"]),
                                      return_std=float(rec["return_std"]), expert_return=float(rec["expert_return"]),
                                      floor_return=float(rec["floor_return"]), excluded=rec["excluded"] or "",
                                      role=rec.get("role") or "test", position=rec.get("position") or ""))
                if rows[-1].role not in ROLES:
                    raise ValueError(f"role {rows[-1].role!r} is not one of {list(ROLES)}")
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{line_no}: unreadable row ({e}); delete the file and rerun the evaluation") from e
    return rows


def _fmt(x: float) -> str:
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.6g}"


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class MethodSummary:
    method: str
    n_seeds: int
    n_rows: int
    normalized_mean: float
    normalized_std: float
    return_mean: float
    return_std: float
    expert_return_mean: float


def summarize(rows: Sequence[ResultRow]) -> list[MethodSummary]:
    """Per method: mean ± std across split seeds of the per-seed mean over held-out tasks (train rows ignored)."""
    by_method_seed: dict[str, dict[int, list[ResultRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if not r.excluded and is_test(r):
            by_method_seed[r.method][r.seed].append(r)
    out = []
    for method, per_seed in by_method_seed.items():
        seed_norm, seed_ret, seed_expert = [], [], []
        for seed in sorted(per_seed):
            task_rows = per_seed[seed]
            norms = [r.normalized for r in task_rows if not math.isnan(r.normalized)]
            seed_norm.append(float(np.mean(norms)) if norms else float("nan"))
            seed_ret.append(float(np.mean([r.return_mean for r in task_rows])))
            seed_expert.append(float(np.mean([r.expert_return for r in task_rows])))
        finite_norm = [v for v in seed_norm if not math.isnan(v)]
        out.append(MethodSummary(
            method=method, n_seeds=len(per_seed), n_rows=sum(len(v) for v in per_seed.values()),
            normalized_mean=float(np.mean(finite_norm)) if finite_norm else float("nan"),
            normalized_std=_std(finite_norm), return_mean=float(np.mean(seed_ret)), return_std=_std(seed_ret),
            expert_return_mean=float(np.mean(seed_expert))))
    out.sort(key=lambda s: (-(s.normalized_mean if not math.isnan(s.normalized_mean) else -1e9), s.method))
    return out


@dataclass
class TaskCurvePoint:
    task_id: str
    context: dict[str, float]
    mean: float      # mean over the split seeds where the task was held out
    std: float       # std over those seeds (0 with one seed)
    n_seeds: int
    expert_return: float
    floor_return: float = float("nan")


def per_task_curve(rows: Sequence[ResultRow], method: str, value: str = "return_mean") -> list[TaskCurvePoint]:
    """One point per held-out task of `method`, aggregating only the seeds where that task was held out (train
    rows ignored)."""
    by_task: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        if r.method == method and not r.excluded and is_test(r):
            by_task[r.task_id].append(r)
    points = []
    for task_id, task_rows in by_task.items():
        values = [getattr(r, value) for r in task_rows]
        points.append(TaskCurvePoint(task_id=task_id, context=dict(task_rows[0].context), mean=float(np.mean(values)),
                                     std=_std(values), n_seeds=len(task_rows),
                                     expert_return=float(np.mean([r.expert_return for r in task_rows])),
                                     floor_return=float(np.mean([r.floor_return for r in task_rows]))))
    return points


@dataclass
class TaskSummary:
    """One held-out task over every split seed that held it out: the references and each method's mean."""

    task_id: str
    context: dict[str, float]
    expert_return: float                     # mean over the seeds (the same episode seeds in every row)
    floor_return: float
    excluded: str                            # why the task is left out of the aggregates ("" if it is not)
    methods: dict[str, tuple[float, float, int]]  # method -> (mean return, mean score, seeds holding it out)


def per_task_summary(rows: Sequence[ResultRow]) -> list[TaskSummary]:
    """Per task (sorted by context): expert, floor and each method's mean return and score over the seeds
    in which it was held out; excluded tasks are kept, with their reason. Train rows are ignored."""
    by_task: dict[str, list[ResultRow]] = defaultdict(list)
    for r in test_rows(rows):
        by_task[r.task_id].append(r)
    out = []
    for task_id, task_rows in by_task.items():
        per_method: dict[str, list[ResultRow]] = defaultdict(list)
        for r in task_rows:
            per_method[r.method].append(r)
        out.append(TaskSummary(
            task_id=task_id, context=dict(task_rows[0].context),
            expert_return=float(np.mean([r.expert_return for r in task_rows])),
            floor_return=float(np.mean([r.floor_return for r in task_rows])),
            excluded=next((r.excluded for r in task_rows if r.excluded), ""),
            methods={m: (float(np.mean([r.return_mean for r in rs])), float(np.mean([r.score for r in rs])), len(rs))
                     for m, rs in per_method.items()}))
    return sorted(out, key=lambda t: (tuple(t.context.values()), t.task_id))
