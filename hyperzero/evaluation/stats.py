"""Aggregate statistics over (split seed, held-out task) pairs, computed with `rliable`.

Each result row is one pair: a method fitted on split k, rolled out on one of split k's test tasks.
Its **score** is the floor-corrected return (R - R_floor) / (R_expert - R_floor), with R_floor the
return of the do-nothing policy (a = 0) on the same episode seeds: 0 = no better than standing still,
1 = as good as the task's expert. Rows whose task is excluded (flagged expert, or an expert no better
than the floor, so no score exists) are left out of every aggregate and listed by the report.

Per method (rliable, Agarwal et al. 2021):
  * the **interquartile mean** (IQM: mean of the middle 50 %) of the scores of all pairs, and of the raw
    returns, with **95 % stratified-bootstrap confidence intervals** (rliable's bootstrap, percentile
    method; the IQM is rliable's definition, evaluated without scipy's per-call overhead). The strata
    are the split seeds and the resampled units their held-out tasks: every split keeps its weight and
    the interval reflects which tasks happened to be held out. When the splits hold different numbers
    of scored tasks (some were excluded), the strata would be ragged, which rliable does not support,
    and with one scored task per split each stratum has no spread: in both cases the bootstrap
    resamples all pairs as one stratum (`ci_strata` says which was used);
  * the **probability of improvement** P(X > Y) over the strongest baseline Y (the non-HyperZero
    zero-shot method with the highest IQM score, unless one is named): per split, the probability that
    X's score on a random held-out task beats Y's on a random held-out task (Mann-Whitney, ties count
    half), averaged over splits, with a 95 % interval from rliable's stratified bootstrap resampling
    both methods independently (the statistic itself is rliable's definition, vectorised).
The bootstrap draws from NumPy's global generator (as rliable does); it is seeded with `seed` and the
global state is restored afterwards, so the intervals are reproducible.

`aggregate` uses held-out (role "test") rows only. `group_aggregate` applies the same IQM and interval
machinery to a group of rows, each group bootstrapped on its own (seeded with the same `seed`):
  * "train": the rows of training tasks (the **cloning** score: how well a method copies the experts of
    the tasks it was fitted on, on fresh episode seeds);
  * "between" / "outside": the held-out rows whose context lies between the split's training tasks, or
    outside them (`hyperzero.evaluation.metrics.context_position`): interpolation vs extrapolation.
A group with fewer than `MIN_GROUP_PAIRS` scored pairs gets no IQM and no interval (the IQM trims a quarter
at each end, which needs at least 4 values); its count and plain mean are reported, with a note saying so.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

HYPERZERO_FAMILY = ("hyperzero", "hyperzero_without_td", "hyperzero_without_q")
MIN_GROUP_PAIRS = 4   # fewer scored pairs in a group: count and mean only (the IQM trims nothing below 4 values)
GROUPS = ("train", "between", "outside")


@dataclass
class MethodStats:
    method: str
    n_seeds: int                  # split seeds with at least one scored pair
    n_pairs: int                  # scored (split seed, held-out task) pairs
    iqm_score: float              # IQM of the floor-corrected score
    iqm_score_lo: float           # 95 % bootstrap interval
    iqm_score_hi: float
    mean_score: float             # plain mean of the scores (for reference)
    iqm_return: float             # IQM of the raw return
    iqm_return_lo: float
    iqm_return_hi: float
    baseline: str                 # Y in P(X > Y); "" when this method is the baseline or there is none
    poi: float                    # P(this method > baseline)
    poi_lo: float
    poi_hi: float
    normalized_mean: float        # the paper's metric: mean over seeds of the mean return / expert return
    normalized_std: float         # its sample std over seeds (ddof 1; 0 with one seed)
    ci_strata: str                # "split seeds" or "pairs" (see the module doc)


def is_baseline(method: str) -> bool:
    """Zero-shot methods outside the HyperZero family (few-shot rows such as maml@10shot are not baselines)."""
    return "@" not in method and method not in HYPERZERO_FAMILY


def pair_matrix(rows: Sequence, method: str, value: str, seeds: Sequence[int] | None = None) -> np.ndarray:
    """[tasks per split, split seeds] matrix of `value` over the scored pairs of `method` (rliable's
    runs x tasks layout, with split seeds as the strata). Ragged splits, or a single scored task per split
    (a stratum of one has no spread, so its interval would collapse to a point), give one column of all pairs."""
    by_seed: dict[int, list] = defaultdict(list)
    for r in rows:
        if r.method == method and not r.excluded and (seeds is None or r.seed in seeds):
            v = float(getattr(r, value))
            if math.isfinite(v):
                by_seed[r.seed].append((r.task_id, v))
    if not by_seed:
        return np.zeros((0, 0))
    columns = [[v for _, v in sorted(by_seed[s])] for s in sorted(by_seed)]
    if len({len(c) for c in columns}) == 1 and len(columns[0]) > 1:
        return np.array(columns, dtype=np.float64).T
    return np.array([v for c in columns for v in c], dtype=np.float64)[:, None]


def interquartile_mean(x: np.ndarray) -> float:
    """rliable's IQM (`rliable.metrics.aggregate_iqm`, scipy's 25 % trimmed mean over all entries), without
    scipy's per-call argument handling, which dominated the bootstrap (~0.7 ms a call); tested equal."""
    a = np.sort(np.asarray(x, dtype=np.float64).ravel())
    cut = int(0.25 * a.size)
    return float(a[cut:a.size - cut].mean())


def _iqm(x: np.ndarray) -> np.ndarray:
    return np.array([interquartile_mean(x)])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's P(X > Y) (`rliable.metrics.probability_of_improvement`): per stratum (column) the Mann-Whitney
    U / (n_x n_y), ties counting one half, averaged over strata. Vectorised: rliable calls scipy once per stratum,
    which made 2000 bootstrap resamples of one comparison take ~5 s here; tested equal to rliable's."""
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([probability_of_improvement(x, y)])


def _interval(scores: dict, func, reps: int) -> tuple[dict, dict]:
    from rliable import library

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points, intervals = library.get_interval_estimates(scores, func, reps=reps)
    return ({k: float(np.asarray(v).ravel()[0]) for k, v in points.items()},
            {k: (float(v[0, 0]), float(v[1, 0])) for k, v in intervals.items()})


@contextlib.contextmanager
def _seeded(seed: int):
    """NumPy's global generator (which rliable's bootstrap draws from) seeded, its previous state restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate(rows: Sequence, reps: int = 2000, seed: int = 0, baseline: str | None = None) -> list[MethodStats]:
    """MethodStats per method (best IQM score first) over the held-out (role "test") rows; see the module doc.
    `baseline` names Y in P(X > Y); None picks the baseline method (`is_baseline`) with the highest IQM score."""
    from hyperzero.evaluation.metrics import test_rows

    rows = test_rows(rows)  # training-task (cloning) rows never enter the transfer statistics
    methods = list(dict.fromkeys(r.method for r in rows))
    if baseline is not None and baseline not in methods:
        raise ValueError(f"baseline {baseline!r} has no evaluated rows; choose one of {methods}")
    from hyperzero.evaluation.metrics import summarize

    nan = float("nan")
    paper = {p.method: p for p in summarize(rows)}   # the paper's metric, excluded rows left out
    stats: dict[str, MethodStats] = {}
    with _seeded(seed):
        for m in methods:
            score, ret = pair_matrix(rows, m, "score"), pair_matrix(rows, m, "return_mean")
            n_pairs = int(score.size)
            ci_iqm, ci_ret, point_iqm, point_ret = (nan, nan), (nan, nan), nan, nan
            if n_pairs:
                p, ci = _interval({"score": score, "return": ret}, _iqm, reps)
                point_iqm, point_ret, ci_iqm, ci_ret = p["score"], p["return"], ci["score"], ci["return"]
            norm_mean, norm_std = (paper[m].normalized_mean, paper[m].normalized_std) if m in paper else (nan, nan)
            stats[m] = MethodStats(
                method=m, n_seeds=len({r.seed for r in rows if r.method == m and not r.excluded}), n_pairs=n_pairs,
                iqm_score=point_iqm, iqm_score_lo=ci_iqm[0], iqm_score_hi=ci_iqm[1],
                mean_score=float(score.mean()) if n_pairs else nan,
                iqm_return=point_ret, iqm_return_lo=ci_ret[0], iqm_return_hi=ci_ret[1],
                baseline="", poi=nan, poi_lo=nan, poi_hi=nan, normalized_mean=norm_mean, normalized_std=norm_std,
                ci_strata="split seeds" if score.ndim == 2 and score.shape[1] > 1 else "pairs")
        candidates = [m for m in methods if is_baseline(m) and stats[m].n_pairs]
        chosen = baseline or (max(candidates, key=lambda m: stats[m].iqm_score) if candidates else None)
        if chosen is not None:
            for m in methods:
                if m == chosen or not stats[m].n_pairs:
                    continue
                common = sorted({r.seed for r in rows if r.method == m} & {r.seed for r in rows if r.method == chosen})
                x, y = pair_matrix(rows, m, "score", common), pair_matrix(rows, chosen, "score", common)
                if x.size == 0 or x.shape[1] != y.shape[1]:
                    continue
                p, ci = _interval({"poi": [x, y]}, _poi, reps)
                s = stats[m]
                s.baseline, s.poi, s.poi_lo, s.poi_hi = chosen, p["poi"], ci["poi"][0], ci["poi"][1]
    return sorted(stats.values(), key=lambda s: (-(s.iqm_score if math.isfinite(s.iqm_score) else -1e9), s.method))


STATS_COLUMNS = [f for f in MethodStats.__dataclass_fields__]


@dataclass
class GroupStats:
    """One method's statistics over one group of rows (see the module doc: "train", "between", "outside")."""

    method: str
    group: str                    # "train" (cloning), "between" or "outside" (held-out rows by position)
    n_seeds: int                  # split seeds with at least one scored pair in the group
    n_pairs: int                  # scored (split seed, task) pairs in the group
    n_tasks: int                  # distinct tasks among them
    iqm_score: float              # NaN when n_pairs < MIN_GROUP_PAIRS (see `note`)
    iqm_score_lo: float
    iqm_score_hi: float
    mean_score: float             # plain mean of the scores (always given when n_pairs > 0)
    iqm_return: float
    iqm_return_lo: float
    iqm_return_hi: float
    mean_return: float
    expert_return_mean: float     # mean expert return over the scored pairs (same episode seeds)
    floor_return_mean: float      # mean do-nothing return over them
    ci_strata: str                # "split seeds" or "pairs", as in MethodStats; "" without an interval
    note: str                     # "" or why there is no IQM


GROUP_COLUMNS = [f for f in GroupStats.__dataclass_fields__]


def rows_of_group(rows: Sequence, group: str) -> list:
    """The rows of a group: "train" = training-task rows; "between" / "outside" = held-out rows by position."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; choose one of {list(GROUPS)}")
    if group == "train":
        return [r for r in rows if getattr(r, "role", "test") == "train"]
    return [r for r in rows if getattr(r, "role", "test") == "test" and getattr(r, "position", "") == group]


def group_aggregate(rows: Sequence, group: str, reps: int = 2000, seed: int = 0) -> list[GroupStats]:
    """GroupStats per method present in the group (first-seen order), IQMs with 95 % stratified-bootstrap
    intervals as in `aggregate`; fewer than MIN_GROUP_PAIRS scored pairs: count and mean only."""
    rows = rows_of_group(rows, group)
    methods = list(dict.fromkeys(r.method for r in rows))
    nan = float("nan")
    out = []
    with _seeded(seed):
        for m in methods:
            score, ret = pair_matrix(rows, m, "score"), pair_matrix(rows, m, "return_mean")
            scored = [r for r in rows if r.method == m and not r.excluded and math.isfinite(float(r.score))]
            n_pairs = int(score.size)
            point_iqm, point_ret, ci_iqm, ci_ret, strata, note = nan, nan, (nan, nan), (nan, nan), "", ""
            if n_pairs >= MIN_GROUP_PAIRS:
                p, ci = _interval({"score": score, "return": ret}, _iqm, reps)
                point_iqm, point_ret, ci_iqm, ci_ret = p["score"], p["return"], ci["score"], ci["return"]
                strata = "split seeds" if score.ndim == 2 and score.shape[1] > 1 else "pairs"
            elif n_pairs:
                note = f"too few pairs ({n_pairs} < {MIN_GROUP_PAIRS}) for an IQM and interval; mean shown"
            else:
                note = "no scored pair"
            out.append(GroupStats(
                method=m, group=group, n_seeds=len({r.seed for r in scored}), n_pairs=n_pairs,
                n_tasks=len({r.task_id for r in scored}), iqm_score=point_iqm, iqm_score_lo=ci_iqm[0],
                iqm_score_hi=ci_iqm[1], mean_score=float(score.mean()) if n_pairs else nan, iqm_return=point_ret,
                iqm_return_lo=ci_ret[0], iqm_return_hi=ci_ret[1], mean_return=float(ret.mean()) if n_pairs else nan,
                expert_return_mean=float(np.mean([r.expert_return for r in scored])) if scored else nan,
                floor_return_mean=float(np.mean([r.floor_return for r in scored])) if scored else nan,
                ci_strata=strata, note=note))
    return out


def _records_to_csv_text(records: Sequence, columns: Sequence[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow([(f"{v:.6g}" if isinstance(v, float) else v) for v in (getattr(r, c) for c in columns)])
    return buf.getvalue()


def groups_to_csv_text(groups: Sequence[GroupStats]) -> str:
    return _records_to_csv_text(groups, GROUP_COLUMNS)


def _f(x: float, digits: int) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(point: float, lo: float, hi: float, digits: int) -> str:
    return "n/a" if not math.isfinite(point) else f"{point:.{digits}f} [{_f(lo, digits)}, {_f(hi, digits)}]"


def stats_to_csv_text(stats: Sequence[MethodStats]) -> str:
    return _records_to_csv_text(stats, STATS_COLUMNS)


def read_stats_csv(path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


MARKDOWN_HEADER = ("method", "pairs (seeds)", "IQM score [95% CI]", "mean score", "IQM return [95% CI]",
                   "P(better than baseline) [95% CI]", "return / expert (paper)")


def stats_table(stats: Sequence) -> list[tuple[str, ...]]:
    """Table rows (MARKDOWN_HEADER order) from MethodStats or from rows of summary.csv (dicts of strings)."""
    def get(s, name):
        v = s[name] if isinstance(s, dict) else getattr(s, name)
        if name in ("method", "baseline", "ci_strata"):
            return v
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    out = []
    for s in stats:
        poi = _ci(get(s, "poi"), get(s, "poi_lo"), get(s, "poi_hi"), 2)
        baseline = get(s, "baseline")
        out.append((get(s, "method"), f"{int(get(s, 'n_pairs'))} ({int(get(s, 'n_seeds'))})",
                    _ci(get(s, "iqm_score"), get(s, "iqm_score_lo"), get(s, "iqm_score_hi"), 3),
                    _f(get(s, "mean_score"), 3),
                    _ci(get(s, "iqm_return"), get(s, "iqm_return_lo"), get(s, "iqm_return_hi"), 1),
                    f"{poi} vs {baseline}" if baseline else "—",
                    f"{_f(get(s, 'normalized_mean'), 3)} ± {_f(get(s, 'normalized_std'), 3)}"))
    return out


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def stats_to_markdown(stats: Sequence) -> str:
    return _markdown(MARKDOWN_HEADER, stats_table(stats))


def _get(s, name):
    """A field of a dataclass, or of a CSV row (dict of strings) as a float where it is numeric."""
    v = s[name] if isinstance(s, dict) else getattr(s, name)
    if name in ("method", "baseline", "ci_strata", "group", "note"):
        return v or ""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def group_cell(g, value: str = "score", digits: int = 3) -> str:
    """'IQM [lo, hi]' of a group's score or return; with too few pairs 'mean X (n = N, too few for an IQM)'."""
    if g is None:
        return "—"
    n = int(_get(g, "n_pairs"))
    if not n:
        return "no scored pair"
    point = _get(g, f"iqm_{value}")
    if math.isfinite(point):
        return _ci(point, _get(g, f"iqm_{value}_lo"), _get(g, f"iqm_{value}_hi"), digits)
    return f"mean {_f(_get(g, f'mean_{value}'), digits)} (n = {n}, too few for an IQM)"


CLONING_HEADER = ("method", "cloning: pairs (seeds)", "cloning IQM score [95% CI]", "transfer IQM score [95% CI]",
                  "cloning IQM return [95% CI]", "transfer IQM return [95% CI]",
                  "expert return: training / held-out tasks")


def cloning_table(cloning: Sequence, summary: Sequence, rows: Sequence = ()) -> list[tuple[str, ...]]:
    """Per method: its cloning score and return (training tasks, `group_aggregate(rows, "train")`) beside its
    transfer score and return (held-out tasks, `aggregate`), with the experts' mean returns on each. Accepts
    dataclasses or rows of cloning.csv / summary.csv; `rows` (results) give the held-out expert mean."""
    clone = {_get(g, "method"): g for g in cloning}
    transfer = {_get(s, "method"): s for s in summary}
    held_expert = {}
    for m in transfer:
        values = [float(r.expert_return) for r in rows if r.method == m and getattr(r, "role", "test") == "test"
                  and not r.excluded and math.isfinite(float(r.score))]
        held_expert[m] = float(np.mean(values)) if values else float("nan")
    out = []
    # the summary's order (best held-out IQM first); few-shot rows (maml@10shot) have no cloning counterpart
    for m in [m for m in transfer if m in clone or "@" not in m] + [m for m in clone if m not in transfer]:
        g, s = clone.get(m), transfer.get(m)
        pairs = f"{int(_get(g, 'n_pairs'))} ({int(_get(g, 'n_seeds'))})" if g is not None else "—"
        t_score = _ci(_get(s, "iqm_score"), _get(s, "iqm_score_lo"), _get(s, "iqm_score_hi"), 3) if s else "—"
        t_ret = _ci(_get(s, "iqm_return"), _get(s, "iqm_return_lo"), _get(s, "iqm_return_hi"), 1) if s else "—"
        expert_train = _f(_get(g, "expert_return_mean"), 1) if g is not None else "n/a"
        out.append((m, pairs, group_cell(g, "score", 3), t_score, group_cell(g, "return", 1), t_ret,
                    f"{expert_train} / {_f(held_expert.get(m, float('nan')), 1)}"))
    return out


def cloning_to_markdown(cloning: Sequence, summary: Sequence, rows: Sequence = ()) -> str:
    if not cloning:
        return ("No training-task rows: the cloning score is off (cloning_tasks = 0, `--cloning-tasks 0`), or the "
                "results predate it.\n")
    return _markdown(CLONING_HEADER, cloning_table(cloning, summary, rows))


POSITION_HEADER = ("method", "between: pairs (tasks)", "between IQM score [95% CI]", "outside: pairs (tasks)",
                   "outside IQM score [95% CI]")


def position_table(positions: Sequence) -> list[tuple[str, ...]]:
    """Per method: the IQM score of its held-out pairs between the training tasks and of those outside them."""
    by = {(_get(g, "method"), _get(g, "group")): g for g in positions}
    methods = list(dict.fromkeys(_get(g, "method") for g in positions))
    out = []
    for m in methods:
        cells = [m]
        for group in ("between", "outside"):
            g = by.get((m, group))
            cells += [f"{int(_get(g, 'n_pairs'))} ({int(_get(g, 'n_tasks'))})" if g is not None else "0",
                      group_cell(g, "score", 3) if g is not None else "—"]
        out.append(tuple(cells))
    return out


def positions_to_markdown(positions: Sequence) -> str:
    if not positions:
        return "No held-out row has a position (the results predate it).\n"
    return _markdown(POSITION_HEADER, position_table(positions))
