"""Metrics on a hand-made results table: normalisation, per-seed means, mean ± std across seeds."""
import math

import numpy as np
import pytest

from hyperzero.evaluation.metrics import (ResultRow, per_task_curve, read_results, summarize, summary_to_markdown,
                                          write_results)


def row(method, seed, task, speed, ret, expert):
    return ResultRow(method=method, seed=seed, task_id=task, context={"speed": speed}, n_episodes=3,
                     return_mean=ret, return_std=1.0, expert_return=expert)


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


def test_normalisation_divides_by_the_expert_return_on_the_same_task():
    assert row("m", 0, "a", 1.0, 300.0, 400.0).normalized == pytest.approx(0.75)
    assert math.isnan(row("m", 0, "a", 1.0, 300.0, 0.0).normalized)


def test_summary_is_mean_and_sample_std_over_seeds_of_per_seed_means():
    summary = {s.method: s for s in summarize(hand_table())}
    hz = summary["hyperzero"]
    assert hz.n_seeds == 2 and hz.n_rows == 4
    assert hz.normalized_mean == pytest.approx((0.625 + 0.7) / 2)
    assert hz.normalized_std == pytest.approx(np.std([0.625, 0.7], ddof=1))
    assert hz.return_mean == pytest.approx((350.0 + 325.0) / 2)
    assert hz.return_std == pytest.approx(np.std([350.0, 325.0], ddof=1))
    blind = summary["context_blind"]
    assert blind.normalized_mean == pytest.approx((0.3 + 0.175) / 2)
    # sorted best first
    assert [s.method for s in summarize(hand_table())] == ["hyperzero", "context_blind"]


def test_single_seed_has_zero_std_and_markdown_shows_it():
    rows = [r for r in hand_table() if r.seed == 0]
    summary = summarize(rows)
    assert all(s.normalized_std == 0.0 and s.n_seeds == 1 for s in summary)
    md = summary_to_markdown(summary)
    assert "| hyperzero | 0.625 ± 0.000 |" in md


def test_per_task_curve_uses_only_seeds_where_task_was_held_out():
    points = {p.task_id: p for p in per_task_curve(hand_table(), "hyperzero")}
    assert points["a"].n_seeds == 1 and points["a"].mean == 400.0 and points["a"].std == 0.0
    assert points["b"].n_seeds == 2 and points["b"].mean == 250.0
    assert points["b"].std == pytest.approx(np.std([300.0, 200.0], ddof=1))


def test_results_csv_round_trip(tmp_path):
    rows = hand_table()
    path = write_results(tmp_path / "results.csv", rows)
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["method", "seed", "task_id", "speed", "n_episodes", "return_mean", "return_std",
                      "expert_return", "normalized"]
    back = read_results(path)
    assert [(r.method, r.seed, r.task_id, r.context, r.return_mean) for r in back] == \
           [(r.method, r.seed, r.task_id, r.context, r.return_mean) for r in rows]


def test_read_results_rejects_foreign_csv(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_results(tmp_path / "x.csv")
