"""Evaluation bookkeeping: only each split seed's TEST tasks are rolled out, from seeds disjoint from the
dataset's, the expert and the do-nothing floor on the same seeds, few-shot data from the test task only;
scores are floor-corrected and flagged tasks are left out of the aggregates.

The split and the fit are planted (a fake fit that records which contexts it was asked for); every
rollout is a real cheetah-run episode. The planted "expert" is joint-velocity feedback, which runs the
cheetah forwards (or, with the sign flipped, backwards) and so earns more than standing still.
"""
import csv
import json

import numpy as np
import pytest

from hyperzero.datasets import DatasetWriter
from hyperzero.datasets.splits import Split
from hyperzero.envs import context_id, get_family
from hyperzero.evaluation import EvalConfig, evaluate

FAMILY = "cheetah-run"
SPEEDS = [-4.0, 2.0, 4.0, 6.0]
TASK_IDS = [context_id(get_family(FAMILY).context_space.validate({"speed": s})) for s in SPEEDS]
SPLITS = {0: ([TASK_IDS[0], TASK_IDS[1]], [TASK_IDS[2]]), 1: ([TASK_IDS[2], TASK_IDS[3]], [TASK_IDS[0]])}
T = 3  # stored steps per dataset episode (the format allows any length)


def _episodes(task_index: int, seeds):
    fam = get_family(FAMILY)
    e = len(seeds)
    # obs carry the task index so few-shot transitions can be traced back to their task
    obs = np.full((e, T, fam.obs_dim), float(task_index), np.float32)
    done = np.zeros((e, T), bool)
    done[:, -1] = True
    return {"obs": obs, "action": np.zeros((e, T, fam.act_dim), np.float32), "reward": np.zeros((e, T), np.float32),
            "next_obs": obs.copy(), "terminated": np.zeros((e, T), bool), "truncated": done,
            "q": np.zeros((e, T), np.float32), "episode_seed": np.asarray(seeds, np.int64)}


def make_run(tmp_path, dataset_seeds=(11, 12)):
    run = tmp_path / "run"
    writer = DatasetWriter(run / "dataset", FAMILY, ["speed"])
    for i, speed in enumerate(SPEEDS):
        writer.add_task({"speed": speed}, _episodes(i, [s + 100 * i for s in dataset_seeds]), {"source": "test"})
        (run / "experts" / TASK_IDS[i]).mkdir(parents=True)
        (run / "experts" / TASK_IDS[i] / "expert.pt").write_bytes(b"planted")
    writer.finalize()
    for seed, (train, test) in SPLITS.items():
        for method in ("fake", "fakemeta"):
            d = run / "fits" / method / f"seed_{seed}"
            d.mkdir(parents=True)
            Split(train=train, val=[], test=test, seed=seed).to_json(d / "split.json")
            (d / "done.json").write_text(json.dumps({"finished": True}))
    return run


class ConstantPolicy:
    def __init__(self, value: float):
        self.value = value

    def act(self, obs):
        import torch

        return torch.full((obs.shape[0], 6), self.value)


class RunningPolicy:
    """a = tanh(±5 · joint velocities): positive feedback runs forwards, negative backwards (above the floor
    of ~100 for speeds 4 and -4 respectively, measured)."""

    def __init__(self, direction: float):
        self.direction = direction

    def act(self, obs):
        import torch

        return torch.tanh(5.0 * self.direction * torch.as_tensor(obs)[:, 11:17])


def expert_for(task_id):
    return RunningPolicy(1.0 if SPEEDS[TASK_IDS.index(task_id)] > 0 else -1.0)


class RecordingFit:
    """A fake TrainedModel: zero-action policy zero-shot on held-out tasks (the floor) but the expert's on its own
    training tasks (a perfect cloner that does not transfer), the task's expert few-shot; records every context it
    generates a policy for."""

    def __init__(self, fit_dir, log):
        self.split = Split.from_json(fit_dir / "split.json")
        self.method = fit_dir.parent.name
        self.is_meta = self.method == "fakemeta"
        self.log = log
        self.key = (self.method, self.split.seed)

    def policy(self, context):
        self.log.setdefault("policy", []).append((self.key, dict(context)))
        if context_id(context) in self.split.train:
            return expert_for(context_id(context))
        return ConstantPolicy(0.0)

    def adapt(self, context, transitions):
        self.log.setdefault("adapt", []).append((self.key, dict(context), {k: np.asarray(v) for k, v in transitions.items()}))
        return RunningPolicy(1.0 if context["speed"] > 0 else -1.0)


def test_only_held_out_tasks_are_evaluated_with_disjoint_seeds(tmp_path):
    run = make_run(tmp_path)
    log, expert_loads = {}, []

    def load_expert(task_dir):
        expert_loads.append(task_dir.name)
        return expert_for(task_dir.name)

    cfg = EvalConfig(episodes=2, eval_seed=500, few_shot_k=(4,), figures=False, bootstrap_reps=200, cloning_tasks=0)
    result = evaluate(run, cfg, load_fit=lambda d: RecordingFit(d, log), load_expert=load_expert, progress=False)

    asked = {(key, context_id(ctx)) for key, ctx in log["policy"]}
    assert asked == {(("fake", 0), TASK_IDS[2]), (("fake", 1), TASK_IDS[0]),
                     (("fakemeta", 0), TASK_IDS[2]), (("fakemeta", 1), TASK_IDS[0])}
    rows = {(r.method, r.seed, r.task_id): r for r in result.rows}
    assert set(rows) == {("fake", 0, TASK_IDS[2]), ("fake", 1, TASK_IDS[0]), ("fakemeta", 0, TASK_IDS[2]),
                         ("fakemeta", 1, TASK_IDS[0]), ("fakemeta@4shot", 0, TASK_IDS[2]),
                         ("fakemeta@4shot", 1, TASK_IDS[0])}
    # doing nothing on the floor's seeds scores exactly 0; the expert's own policy exactly 1
    for method in ("fake", "fakemeta"):
        r = rows[(method, 0, TASK_IDS[2])]
        assert r.return_mean == r.floor_return and r.score == 0.0 and not r.excluded
    expert_like = rows[("fakemeta@4shot", 0, TASK_IDS[2])]
    assert expert_like.return_mean == expert_like.expert_return and expert_like.score == pytest.approx(1.0)
    assert expert_like.expert_return > expert_like.floor_return + 20   # the rollouts are real
    # each held-out task's expert was rolled out once, not once per fit
    assert sorted(expert_loads) == sorted([TASK_IDS[0], TASK_IDS[2]])
    # few-shot data: k transitions from the held-out task's own dataset episodes
    for key, ctx, transitions in log["adapt"]:
        assert transitions["obs"].shape[0] == 4
        assert np.all(transitions["obs"] == TASK_IDS.index(context_id(ctx)))
    with open(run / "eval" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and set(table[0]) >= {"method", "seed", "task_id", "speed", "return_mean", "return_std",
                                                 "expert_return", "floor_return", "score", "normalized", "excluded"}
    summary = {r.method: r for r in result.summary}
    assert summary["fake"].n_pairs == 2 and summary["fake"].iqm_score == 0.0
    assert summary["fakemeta@4shot"].iqm_score == pytest.approx(1.0)
    assert "IQM score [95% CI]" in (run / "eval" / "summary.md").read_text()

    # rerun: rows and expert returns come from the caches, nothing is rolled out again; a task whose expert was
    # flagged since then keeps its rows, marked, and leaves every aggregate
    log.clear()
    expert_loads.clear()
    (run / "experts" / TASK_IDS[0] / "summary.json").write_text(json.dumps({"task_id": TASK_IDS[0], "flagged": True}))
    again = evaluate(run, cfg, load_fit=lambda d: RecordingFit(d, log), load_expert=load_expert, progress=False)
    assert expert_loads == [] and "policy" not in log
    assert len(again.rows) == len(result.rows)
    assert {r.excluded for r in again.rows if r.task_id == TASK_IDS[0]} == {"flagged expert"}
    assert {r.excluded for r in again.rows if r.task_id != TASK_IDS[0]} == {""}
    assert {r.method: r for r in again.summary}["fake"].n_pairs == 1


def test_evaluation_seeds_overlapping_the_dataset_are_refused(tmp_path):
    run = make_run(tmp_path, dataset_seeds=(500, 501))
    with pytest.raises(ValueError, match="--eval-seed"):
        evaluate(run, EvalConfig(episodes=2, eval_seed=500, figures=False), load_fit=lambda d: None,
                 load_expert=lambda d: None, progress=False)


def test_unknown_method_is_a_clear_error(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(ValueError, match="no complete fit for methods"):
        evaluate(run, EvalConfig(episodes=1, methods=["nope"], figures=False), load_fit=lambda d: None,
                 load_expert=lambda d: None, progress=False)


def test_training_tasks_get_cloning_rows_kept_apart_from_the_held_out_results(tmp_path):
    """cloning_tasks > 0 adds rows of the split's TRAINING tasks (role "train", zero-shot only, on the same seeds
    and references); the held-out rows and the held-out summary are exactly those of an evaluation without them."""
    from dataclasses import asdict

    from hyperzero.evaluation.evaluate import cloning_task_ids
    from hyperzero.evaluation.stats import stats_to_markdown

    run = make_run(tmp_path)
    log = {}
    load_fit, load_expert = (lambda d: RecordingFit(d, log)), (lambda d: expert_for(d.name))
    base = dict(episodes=2, eval_seed=500, few_shot_k=(4,), figures=False, bootstrap_reps=200)
    held_only = evaluate(run, EvalConfig(cloning_tasks=0, **base), load_fit=load_fit, load_expert=load_expert,
                         progress=False)
    summary_before = (run / "eval" / "summary.csv").read_text()
    assert {r.role for r in held_only.rows} == {"test"} and held_only.cloning == []
    log.clear()
    result = evaluate(run, EvalConfig(cloning_tasks=2, **base), load_fit=load_fit, load_expert=load_expert,
                      progress=False)   # the rows cache is keyed by cloning_tasks: every fit is rolled out again

    train = [r for r in result.rows if r.role == "train"]
    test = [r for r in result.rows if r.role == "test"]
    # held-out rows unchanged (same returns, same order), held-out summary unchanged byte for byte
    assert [asdict(r) for r in test] == [asdict(r) for r in held_only.rows]
    assert (run / "eval" / "summary.csv").read_text() == summary_before
    # train rows: only the split's training tasks, never its test tasks; zero-shot only (no few-shot, no adapt)
    assert {(r.method, r.seed, r.task_id) for r in train} == {
        (m, seed, t) for m in ("fake", "fakemeta") for seed, (tr, _) in SPLITS.items() for t in tr}
    for r in train:
        assert r.task_id in SPLITS[r.seed][0] and r.task_id not in SPLITS[r.seed][1] and r.position == ""
    assert all(context_id(ctx) in SPLITS[key[1]][1] for key, ctx, _ in log["adapt"])
    # the planted fit copies its training tasks' experts and does nothing elsewhere: cloning 1, transfer 0
    scored = [r for r in train if not r.excluded]
    assert scored and all(r.score == pytest.approx(1.0) for r in scored)
    cloning = {g.method: g for g in result.cloning}
    assert set(cloning) == {"fake", "fakemeta"} and cloning["fake"].n_pairs == len(
        [r for r in scored if r.method == "fake"])
    assert cloning["fake"].mean_score == pytest.approx(1.0)
    assert {s.method: s for s in result.summary}["fake"].iqm_score == 0.0
    # files: role and position columns; the cloning table; summary.md shows both, and between/outside
    with open(run / "eval" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {r["role"] for r in table} == {"test", "train"}
    assert {r["position"] for r in table if r["role"] == "test"} == {"outside"}   # no same-sign neighbour on a side
    with open(run / "eval" / "cloning.csv", newline="") as f:
        assert {r["method"] for r in csv.DictReader(f)} == {"fake", "fakemeta"}
    md = (run / "eval" / "summary.md").read_text()
    assert md.startswith(stats_to_markdown(result.summary))   # the held-out table first, as before
    assert "## Cloning (training tasks) vs transfer (held-out tasks)" in md and "cloning IQM score" in md
    assert "## Held-out tasks between vs outside the training tasks" in md
    assert "Cloning" in (run / "eval" / "cloning.md").read_text()
    # the training tasks are drawn per split seed, the same for every method
    assert cloning_task_ids(SPLITS[0][0], 0, 2) == sorted(SPLITS[0][0])
    one = cloning_task_ids(TASK_IDS, 7, 2)
    assert one == cloning_task_ids(list(reversed(TASK_IDS)), 7, 2) and len(set(one)) == 2 and set(one) <= set(TASK_IDS)
    assert cloning_task_ids(TASK_IDS, 7, 0) == []


def test_train_tasks_need_references_in_worker_mode_too(tmp_path):
    """The parallel path rolls the references out before the fits: the cloning tasks must be among them."""
    from hyperzero.evaluation.evaluate import ExpertReference, _reference_tasks, find_fits

    run = make_run(tmp_path)
    experts = ExpertReference(run, FAMILY, expert_for, run / "eval" / "expert_returns.json")
    todo = [(i, fit, None, None) for i, fit in enumerate(find_fits(run))]
    assert _reference_tasks(todo, set(TASK_IDS), experts, [500, 501], 0) == sorted([TASK_IDS[0], TASK_IDS[2]])
    assert _reference_tasks(todo, set(TASK_IDS), experts, [500, 501], 2) == sorted(TASK_IDS)


def test_negative_cloning_tasks_is_a_clear_error():
    with pytest.raises(ValueError, match="cloning_tasks must be >= 0.*--cloning-tasks 0"):
        EvalConfig(cloning_tasks=-1)
