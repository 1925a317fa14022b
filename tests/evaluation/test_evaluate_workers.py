"""Evaluation in worker processes: the same rows as one process, and a worker's error reaches the caller.

Everything is real: `hyperzero run tiny` trains the experts, collects the dataset and fits two methods on two
split seeds; only then is `evaluate` called, once in this process and once with two workers.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hyperzero.evaluation import EvalConfig, evaluate
from hyperzero.utils.integrity import CorruptFileError
from hyperzero.utils.io import read_json

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tiny") / "run"
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "hyperzero", "run", "tiny", "--no-progress", "--out", str(run),
                           "--stop-after", "fits"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("eval"))
    return to


def config(workers: int) -> EvalConfig:
    return EvalConfig(episodes=2, figures=False, num_workers=workers, bootstrap_reps=200)


@pytest.mark.slow
def test_two_workers_write_the_rows_and_references_one_process_writes(fitted_run, tmp_path):
    one, two = copy_run(fitted_run, tmp_path / "one"), copy_run(fitted_run, tmp_path / "two")
    serial = evaluate(one, config(1), progress=False)
    parallel = evaluate(two, config(2), progress=False)
    held_out = [r for r in parallel.rows if r.role == "test"]
    assert len(held_out) == 2 * 2 * 1  # 2 methods x 2 split seeds x 1 held-out task
    assert len(parallel.rows) == len(serial.rows) > len(held_out)   # and the training tasks of the cloning score
    for r in parallel.rows:   # whose references the workers rolled out first, like the held-out tasks'
        split = read_json(two / "fits" / r.method / f"seed_{r.seed}" / "split.json")
        assert r.task_id in (split["test"] if r.role == "test" else split["train"])
    assert (two / "eval" / "results.csv").read_bytes() == (one / "eval" / "results.csv").read_bytes()
    assert read_json(two / "eval" / "expert_returns.json") == read_json(one / "eval" / "expert_returns.json")
    for method in ("hyperzero", "context_blind"):  # each fit's rows are cached for a resumed evaluation
        assert (two / "eval" / "rows" / method / "seed_1.json").exists()


@pytest.mark.slow
def test_an_error_inside_a_worker_is_raised_to_the_caller(fitted_run, tmp_path):
    run = copy_run(fitted_run, tmp_path / "broken")
    model = run / "fits" / "hyperzero" / "seed_1" / "model.pt"
    model.write_bytes(model.read_bytes()[:100])  # truncated after its checksum was recorded
    with pytest.raises(CorruptFileError, match="model.pt") as caught:
        evaluate(run, config(2), progress=False)
    assert caught.value.path == model


@pytest.mark.slow
def test_cached_rows_get_the_current_between_outside_rule(fitted_run, tmp_path):
    """A resumed evaluation reuses each fit's cached rollouts but recomputes their positions from split.json, so
    a change of the rule relabels a finished run without rolling anything out again."""
    from hyperzero.utils.io import atomic_write_json

    run = copy_run(fitted_run, tmp_path / "relabel")
    first = evaluate(run, config(1), progress=False)
    cache = run / "eval" / "rows" / "hyperzero" / "seed_1.json"
    cached = read_json(cache)
    for row in cached["rows"]:
        if row["role"] == "test":
            row["position"] = "stale"  # as if written under another rule
    atomic_write_json(cache, cached)
    again = evaluate(run, config(1), progress=False)
    assert [(r.method, r.seed, r.task_id, r.position) for r in again.rows] == \
        [(r.method, r.seed, r.task_id, r.position) for r in first.rows]
    assert {r.position for r in again.rows if r.role == "test"} <= {"between", "outside"}
