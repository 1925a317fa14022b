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
    """A fake TrainedModel: zero-action policy zero-shot (the floor), the task's expert few-shot; records every
    context it generates a policy for."""

    def __init__(self, fit_dir, log):
        self.split = Split.from_json(fit_dir / "split.json")
        self.method = fit_dir.parent.name
        self.is_meta = self.method == "fakemeta"
        self.log = log
        self.key = (self.method, self.split.seed)

    def policy(self, context):
        self.log.setdefault("policy", []).append((self.key, dict(context)))
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

    cfg = EvalConfig(episodes=2, eval_seed=500, few_shot_k=(4,), figures=False, bootstrap_reps=200)
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
