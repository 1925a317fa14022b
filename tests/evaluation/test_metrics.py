"""Metrics on hand-made results tables: floor-corrected scores, exclusions, the rliable aggregates (IQM with
stratified-bootstrap intervals, probability of improvement), the paper-style summary, CSV round trip."""
import math

import numpy as np
import pytest
import scipy.stats

from hyperzero.evaluation.metrics import (ResultRow, context_position, per_task_curve, per_task_summary, read_results,
                                          signed_features, summarize, varying_features, write_results)
from hyperzero.evaluation.stats import (MIN_GROUP_PAIRS, aggregate, cloning_to_markdown, group_aggregate,
                                       interquartile_mean, pair_matrix, positions_to_markdown,
                                       probability_of_improvement, stats_to_csv_text, stats_to_markdown)


def row(method, seed, task, speed, ret, expert, floor=100.0, excluded="", role="test", position=""):
    return ResultRow(method=method, seed=seed, task_id=task, context={"speed": speed}, n_episodes=3,
                     return_mean=ret, return_std=1.0, expert_return=expert, floor_return=floor, excluded=excluded,
                     role=role, position=position)


def hand_table():
    # seed 0 holds out tasks a, b; seed 1 holds out b, c.
    return [
        row("hyperzero", 0, "a", -4.0, 400.0, 800.0),   # 0.5
        row("hyperzero", 0, "b", 2.0, 300.0, 400.0),    # 0.75  -> seed 0 mean 0.625
        row("hyperzero", 1, "b", 2.0, 200.0, 400.0),    # 0.5
        row("hyperzero", 1, "c", 6.0, 450.0, 500.0),    # 0.9   -> seed 1 mean 0.7
        row("context_blind", 0, "a", -4.0, 80.0, 800.0),   # 0.1
        row("context_blind", 0, "b", 2.0, 200.0, 400.0),   # 0.5 -> 0.3
        row("context_blind", 1, "b", 2.0, 100.0, 400.0),   # 0.25
        row("context_blind", 1, "c", 6.0, 50.0, 500.0),    # 0.1 -> 0.175
    ]


def scored_table(n_seeds=5, n_tasks=3, seed=0):
    """Every split holds out n_tasks of 12 tasks; expert 600, floor 100; hyperzero > mlp_policy > context_blind."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_seeds):
        for t in rng.choice(12, n_tasks, replace=False):
            for method, level in (("hyperzero", 0.8), ("mlp_policy", 0.5), ("context_blind", 0.1)):
                score = level + 0.1 * rng.normal()
                rows.append(row(method, k, f"t{t}", float(t), 100.0 + 500.0 * score, 600.0))
    return rows


def test_score_is_floor_corrected_and_undefined_when_the_expert_is_not_above_the_floor():
    assert row("m", 0, "a", 1.0, 300.0, 500.0).score == pytest.approx(0.5)      # (300-100)/(500-100)
    assert row("m", 0, "a", 1.0, 100.0, 500.0).score == pytest.approx(0.0)      # doing nothing scores 0
    assert row("m", 0, "a", 1.0, 50.0, 500.0).score < 0                          # worse than doing nothing
    assert math.isnan(row("m", 0, "a", 1.0, 300.0, 90.0).score)
    assert row("m", 0, "a", 1.0, 300.0, 400.0).normalized == pytest.approx(0.75)  # the paper's metric, kept
    assert math.isnan(row("m", 0, "a", 1.0, 300.0, 0.0).normalized)


def test_iqm_and_intervals_come_from_rliable_over_all_seed_task_pairs():
    rows = scored_table()
    stats = {s.method: s for s in aggregate(rows, reps=200, seed=0)}
    hz = stats["hyperzero"]
    scores = np.array([r.score for r in rows if r.method == "hyperzero"])
    assert hz.n_pairs == 15 and hz.n_seeds == 5 and hz.ci_strata == "split seeds"
    assert hz.iqm_score == pytest.approx(scipy.stats.trim_mean(scores, 0.25))   # rliable's aggregate_iqm
    assert hz.mean_score == pytest.approx(scores.mean())
    assert hz.iqm_score_lo < hz.iqm_score < hz.iqm_score_hi and hz.iqm_score_hi - hz.iqm_score_lo < 0.3
    assert hz.iqm_return == pytest.approx(100 + 500 * hz.iqm_score)   # the return is an affine map of the score here
    # strata are the split seeds: [held-out tasks per split, split seeds]
    assert pair_matrix(rows, "hyperzero", "score").shape == (3, 5)
    # one held-out task per split: a stratum of one has no spread, so all pairs are resampled as one stratum
    single = {s.method: s for s in aggregate(scored_table(n_tasks=1), reps=200)}["hyperzero"]
    assert single.ci_strata == "pairs" and single.iqm_score_lo < single.iqm_score_hi
    # reproducible, and NumPy's global generator is left as it was
    np.random.seed(7)
    before = np.random.random()
    np.random.seed(7)
    again = {s.method: s for s in aggregate(rows, reps=200, seed=0)}
    assert np.random.random() == before
    assert (again["hyperzero"].iqm_score_lo, again["hyperzero"].poi_lo) == (hz.iqm_score_lo, hz.poi_lo)


def test_probability_of_improvement_is_measured_against_the_strongest_baseline():
    stats = {s.method: s for s in aggregate(scored_table(), reps=200)}
    assert stats["hyperzero"].baseline == "mlp_policy"            # the better of the two baselines
    assert stats["mlp_policy"].baseline == "" and math.isnan(stats["mlp_policy"].poi)
    assert stats["hyperzero"].poi > 0.9 and stats["hyperzero"].poi_lo > 0.75
    assert stats["context_blind"].poi < 0.1
    assert [s.method for s in aggregate(scored_table(), reps=200)] == ["hyperzero", "mlp_policy", "context_blind"]
    named = {s.method: s for s in aggregate(scored_table(), reps=200, baseline="context_blind")}
    assert named["mlp_policy"].baseline == "context_blind" and named["mlp_policy"].poi > 0.9
    with pytest.raises(ValueError, match="baseline 'nope'"):
        aggregate(scored_table(), baseline="nope")
    md = stats_to_markdown(aggregate(scored_table(), reps=200))
    assert "| hyperzero | 15 (5) |" in md and " vs mlp_policy |" in md


def test_fast_statistics_equal_rliables():
    from rliable import metrics

    rng = np.random.default_rng(2)
    for shape in ((3, 5), (1, 1), (7, 1), (4, 3)):
        x = rng.normal(size=shape)
        assert interquartile_mean(x) == pytest.approx(metrics.aggregate_iqm(x))

    rng = np.random.default_rng(3)
    for shape_x, shape_y in (((3, 5), (3, 5)), ((4, 2), (6, 2)), ((1, 1), (1, 1))):
        x = np.round(rng.normal(size=shape_x), 1)      # rounding makes ties
        y = np.round(rng.normal(size=shape_y), 1)
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    x = np.round(rng.normal(size=(3, 4)), 1)
    assert probability_of_improvement(x, x.copy()) == pytest.approx(0.5)


def test_excluded_tasks_are_left_out_of_every_aggregate():
    rows = scored_table()
    flagged_task = rows[0].task_id
    marked = [row(r.method, r.seed, r.task_id, r.context["speed"], r.return_mean, r.expert_return,
                  excluded="flagged expert" if r.task_id == flagged_task else "") for r in rows]
    kept = [r for r in rows if r.task_id != flagged_task]
    a = {s.method: s for s in aggregate(marked, reps=200)}
    b = {s.method: s for s in aggregate(kept, reps=200)}
    assert a["hyperzero"].n_pairs == b["hyperzero"].n_pairs < 15
    assert a["hyperzero"].iqm_score == pytest.approx(b["hyperzero"].iqm_score)
    # the flagged task was held out by some splits only: ragged strata -> one stratum of all pairs
    assert a["hyperzero"].ci_strata == "pairs"
    assert {t.task_id: t.excluded for t in per_task_summary(marked)}[flagged_task] == "flagged expert"


def test_paper_style_summary_is_mean_and_sample_std_over_seeds_of_per_seed_means():
    summary = {s.method: s for s in summarize(hand_table())}
    hz = summary["hyperzero"]
    assert hz.n_seeds == 2 and hz.n_rows == 4
    assert hz.normalized_mean == pytest.approx((0.625 + 0.7) / 2)
    assert hz.normalized_std == pytest.approx(np.std([0.625, 0.7], ddof=1))
    assert hz.return_mean == pytest.approx((350.0 + 325.0) / 2)
    stats = {s.method: s for s in aggregate(hand_table(), reps=200)}
    assert stats["hyperzero"].normalized_mean == pytest.approx(hz.normalized_mean)
    assert stats["hyperzero"].normalized_std == pytest.approx(hz.normalized_std)


def test_per_task_views_use_only_seeds_where_the_task_was_held_out():
    points = {p.task_id: p for p in per_task_curve(hand_table(), "hyperzero")}
    assert points["a"].n_seeds == 1 and points["a"].mean == 400.0 and points["a"].std == 0.0
    assert points["b"].n_seeds == 2 and points["b"].mean == 250.0 and points["b"].floor_return == 100.0
    tasks = {t.task_id: t for t in per_task_summary(hand_table())}
    ret, score, n = tasks["b"].methods["hyperzero"]
    assert (ret, n) == (250.0, 2) and score == pytest.approx((200 / 300 + 100 / 300) / 2)
    assert tasks["b"].expert_return == 400.0 and tasks["b"].floor_return == 100.0


def test_results_csv_round_trip(tmp_path):
    rows = hand_table()
    rows[0].excluded = "flagged expert"
    path = write_results(tmp_path / "results.csv", rows)
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["method", "seed", "task_id", "speed", "n_episodes", "return_mean", "return_std",
                      "expert_return", "floor_return", "score", "normalized", "excluded", "role", "position"]
    rows[1].position = "between"
    rows.append(row("hyperzero", 0, "z", 8.0, 500.0, 600.0, role="train"))
    back = read_results(write_results(path, rows))
    fields = ("method", "seed", "task_id", "context", "return_mean", "floor_return", "excluded", "role", "position")
    assert [tuple(getattr(r, f) for f in fields) for r in back] == [tuple(getattr(r, f) for f in fields) for r in rows]


def test_results_csv_written_before_roles_reads_as_held_out_rows(tmp_path):
    lines = write_results(tmp_path / "new.csv", hand_table()).read_text().splitlines()
    old = "\n".join(",".join(line.split(",")[:-2]) for line in lines) + "\n"   # drop role, position
    (tmp_path / "old.csv").write_text(old)
    back = read_results(tmp_path / "old.csv")
    assert len(back) == 8 and {r.role for r in back} == {"test"} and {r.position for r in back} == {""}
    assert all(set(r.context) == {"speed"} for r in back)   # role / position are not taken for context features
    (tmp_path / "bad.csv").write_text(lines[0] + "\n" + lines[1].rsplit(",", 2)[0] + ",validation,\n")
    with pytest.raises(ValueError, match="bad.csv:2: unreadable row.*role 'validation'"):
        read_results(tmp_path / "bad.csv")


def test_read_results_rejects_foreign_csv(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_results(tmp_path / "x.csv")


def test_training_task_rows_never_enter_the_held_out_aggregates():
    """Cloning rows (role "train") leave the held-out statistics exactly as they are without them."""
    held = scored_table()
    train = [row(r.method, r.seed, f"train{r.task_id}", r.context["speed"] + 0.5, 600.0 if r.method == "context_blind"
                 else 50.0, 600.0, role="train") for r in held]
    mixed = [x for pair in zip(held, train) for x in pair]
    assert stats_to_csv_text(aggregate(mixed, reps=200)) == stats_to_csv_text(aggregate(held, reps=200))
    assert summarize(mixed) == summarize(held)
    assert per_task_curve(mixed, "hyperzero") == per_task_curve(held, "hyperzero")
    assert per_task_summary(mixed) == per_task_summary(held)
    # the cloning aggregate sees the train rows only: context_blind copies perfectly, the others are below the floor
    cloning = {g.method: g for g in group_aggregate(mixed, "train", reps=200)}
    assert cloning["context_blind"].iqm_score == pytest.approx(1.0) and cloning["context_blind"].n_pairs == 15
    assert cloning["hyperzero"].iqm_score == pytest.approx(-0.1) and cloning["hyperzero"].iqm_return == 50.0
    assert cloning["hyperzero"].iqm_score_lo <= -0.1 <= cloning["hyperzero"].iqm_score_hi
    assert cloning["hyperzero"].expert_return_mean == 600.0 and cloning["hyperzero"].ci_strata == "split seeds"
    md = cloning_to_markdown(list(cloning.values()), aggregate(held, reps=200), mixed)
    line = next(l for l in md.splitlines() if l.startswith("| hyperzero |"))
    assert "| 15 (5) | -0.100 [" in line and line.endswith("| 600.0 / 600.0 |")
    assert "the cloning score is off" in cloning_to_markdown([], aggregate(held, reps=200))


def test_small_groups_report_their_count_and_mean_instead_of_an_iqm():
    rows = [row("hyperzero", s, f"t{s}", 1.0, 350.0, 600.0, position="between") for s in range(MIN_GROUP_PAIRS - 1)]
    rows += [row("hyperzero", s, f"u{s}{k}", 9.0, 100.0 + 100 * k, 600.0, position="outside")
             for s in range(2) for k in range(3)]
    groups = group_aggregate(rows, "between", reps=200) + group_aggregate(rows, "outside", reps=200)
    between, outside = groups
    assert between.n_pairs == 3 and math.isnan(between.iqm_score) and between.mean_score == pytest.approx(0.5)
    assert "too few pairs" in between.note
    assert outside.n_pairs == 6 and outside.iqm_score == pytest.approx(interquartile_mean(
        np.array([0.0, 0.2, 0.4, 0.0, 0.2, 0.4]))) and outside.note == ""
    md = positions_to_markdown(groups)
    assert "| hyperzero | 3 (3) | mean 0.500 (n = 3, too few for an IQM) | 6 (6) | 0.200 [" in md
    with pytest.raises(ValueError, match="unknown group"):
        group_aggregate(rows, "inside")


def _ctx(speed, length=None):
    return {"speed": speed} if length is None else {"speed": speed, "torso_length": length}


def test_between_or_outside_counts_only_training_tasks_of_the_same_direction():
    train = [_ctx(v) for v in (-6.0, -2.0, 2.0, 6.0)]
    signed = signed_features("cheetah-run", train, ["speed"])
    assert signed == ["speed"]                                  # declared: a speed's sign is its direction
    assert context_position(_ctx(4.0), train, ["speed"], signed) == "between"
    assert context_position(_ctx(-4.0), train, ["speed"], signed) == "between"
    assert context_position(_ctx(2.0), train, ["speed"], signed) == "between"     # at a training value counts
    assert context_position(_ctx(8.0), train, ["speed"], signed) == "outside"
    # 1 lies between -2 and 2, but -2 runs the other way: no neighbour below on its own side
    assert context_position(_ctx(1.0), train, ["speed"], signed) == "outside"
    assert context_position(_ctx(-1.0), train, ["speed"], signed) == "outside"
    assert context_position(_ctx(1.0), train, ["speed"], []) == "between"         # unsigned, it would be between
    assert context_position(_ctx(-3.0), [_ctx(2.0), _ctx(6.0)], ["speed"], signed) == "outside"  # no same sign


def test_between_or_outside_on_a_two_dimensional_grid():
    train = [_ctx(s, l) for s in (2.0, 6.0) for l in (0.3, 0.7)] + [_ctx(-4.0, 0.5), _ctx(-8.0, 0.5)]
    dataset = train + [_ctx(4.0, 0.5), _ctx(-6.0, 0.3)]
    names = ["speed", "torso_length"]
    varied = varying_features(dataset, names)
    signed = signed_features("cheetah-run", dataset, varied)
    assert varied == names and signed == ["speed"]              # torso length is not a direction
    assert context_position(_ctx(4.0, 0.5), train, varied, signed) == "between"
    assert context_position(_ctx(4.0, 0.9), train, varied, signed) == "outside"   # beyond in torso length
    assert context_position(_ctx(7.0, 0.5), train, varied, signed) == "outside"   # beyond in speed
    assert context_position(_ctx(-6.0, 0.5), train, varied, signed) == "between"
    # backwards, only torso length 0.5 was trained on: 0.3 is outside, although forward tasks have 0.3
    assert context_position(_ctx(-6.0, 0.3), train, varied, signed) == "outside"
    # a held-out corner of a grid is outside although training tasks share each of its values; an edge point is not
    grid = [_ctx(s, l) for s in (1.0, 2.0, 3.0) for l in (0.4, 0.5, 0.6)]
    train = [c for c in grid if c not in (_ctx(3.0, 0.6), _ctx(2.0, 0.5))]
    assert context_position(_ctx(3.0, 0.6), train, names, ["speed"]) == "outside"  # (3, 0.5) and (2, 0.6) trained
    assert context_position(_ctx(2.0, 0.5), train, names, ["speed"]) == "between"
    train = [c for c in grid if c != _ctx(2.0, 0.6)]
    assert context_position(_ctx(2.0, 0.6), train, names, ["speed"]) == "between"  # (1, 0.6) and (3, 0.6) trained
    # grid values as a range parser makes them (0.1 * 3 != 0.3) still count as at the training value
    assert context_position(_ctx(2.0, 0.1 * 3), [_ctx(1.0, 0.3), _ctx(3.0, 0.3)], names, ["speed"]) == "between"
    # a feature that does not vary in the dataset constrains nothing
    assert varying_features([_ctx(2.0, 0.5), _ctx(4.0, 0.5)], names) == ["speed"]
    # a feature the family does not declare is signed when the data holds both signs of it
    assert signed_features(None, [{"x": -1.0}, {"x": 2.0}, {"y": 1.0}], ["x", "y"]) == ["x"]
