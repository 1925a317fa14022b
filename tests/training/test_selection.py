"""Checkpoint selection on validation tasks by rollout return, in the real environment.

Expert gaits are idiosyncratic: a policy can imitate a task's recorded actions closely and still walk
worse than one that does not. Here the validation task's recorded actions are a poor gait (alternating
full torques, return ~26 on walker-walk) and the loop passes through two checkpoints: at step 5 the
policy reproduces those actions (action MSE ~0), at step 10 it holds every joint at 0.5 (action MSE
1.25, return ~66). Selection on validation action MSE keeps the worse walker; selection on return
keeps the better one.
"""
import csv
import json

import numpy as np
import pytest
import torch

import hyperzero.training.trainer as trainer
from hyperzero.datasets import DatasetWriter, load_dataset
from hyperzero.datasets.splits import make_split
from hyperzero.envs import get_family
from hyperzero.models.config import ModelConfig
from hyperzero.training import FitConfig, fit, load_fit

FAMILY = "walker-walk"
SPEEDS = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)
POOR_GAIT = np.array([0.99, -0.99] * 3, np.float32)   # recorded "expert" actions of every task
STEADY = np.full(6, 0.5, np.float32)                   # not what was recorded, but walks better


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    fam = get_family(FAMILY)
    directory = tmp_path_factory.mktemp("selection") / "dataset"
    writer = DatasetWriter(directory, FAMILY, ["speed"], gamma=0.99)
    rng = np.random.default_rng(0)
    for i, speed in enumerate(SPEEDS):
        e, t = 1, 5
        states = rng.normal(size=(e, t + 1, fam.obs_dim)).astype(np.float32)  # next_obs[t] == obs[t + 1]
        obs = states[:, :-1]
        truncated = np.zeros((e, t), bool)
        truncated[:, -1] = True
        writer.add_task({"speed": speed}, {
            "obs": obs, "action": np.broadcast_to(POOR_GAIT, (e, t, 6)).copy(), "reward": np.zeros((e, t), np.float32),
            "next_obs": states[:, 1:], "terminated": np.zeros((e, t), bool), "truncated": truncated,
            "q": np.zeros((e, t), np.float32), "episode_seed": np.array([10 + i], np.int64)}, {"source": "test"})
    writer.finalize()
    return directory


def constant_actions(model, action: np.ndarray) -> None:
    """Make the mlp_policy output `action` whatever the state (its last layer: zero weights, atanh bias)."""
    with torch.no_grad():
        model.actor.fc2.weight.zero_()
        model.actor.fc2.bias.copy_(torch.atanh(torch.as_tensor(action)))


def fit_through_two_checkpoints(dataset, out, selection, monkeypatch):
    built = []
    build = trainer.build_method
    monkeypatch.setattr(trainer, "build_method", lambda *a, **kw: built.append(build(*a, **kw)) or built[-1])
    script = {5: POOR_GAIT, 10: STEADY}
    cfg = FitConfig(method="mlp_policy", seed=0, steps=10, eval_interval=5, checkpoint_interval=5, log_interval=5,
                    lr=1e-12, batch_size=8, tasks_per_batch=2, val_samples_per_task=5, val_episodes=1,
                    selection=selection, num_threads=1, model=ModelConfig(embed_dims=(8, 8, 8), hidden_dim=16))
    fit(dataset, out, cfg, progress=False,
        callbacks=[lambda step, _: constant_actions(built[0], script[step]) if step in script else None])
    return json.loads((out / "done.json").read_text()), load_fit(out)


def test_return_selection_keeps_the_better_walker_where_action_mse_keeps_the_worse(dataset, tmp_path, monkeypatch):
    split = make_split(load_dataset(dataset).task_ids, 0)
    assert len(split.val) == 1 and len(split.test) == 3
    by_loss, loss_model = fit_through_two_checkpoints(dataset, tmp_path / "val_loss", "val_loss", monkeypatch)
    by_return, return_model = fit_through_two_checkpoints(dataset, tmp_path / "return", "return", monkeypatch)

    obs = np.zeros((1, get_family(FAMILY).obs_dim), np.float32)
    context = {"speed": 1.0}
    # action-MSE selection kept step 5 (imitates the recorded actions), return selection kept step 10
    assert by_loss["selected_step"] == 5 and by_loss["selection_metric"] == "zero_shot_action_loss"
    np.testing.assert_allclose(loss_model.policy(context).act(obs)[0], POOR_GAIT, atol=1e-4)
    assert by_return["selected_step"] == 10 and by_return["selection_metric"] == "return"
    np.testing.assert_allclose(return_model.policy(context).act(obs)[0], STEADY, atol=1e-4)
    assert by_loss["best_val"] < 1e-3 < 1.0 < by_loss["final_val"]["zero_shot_action_loss"]

    # ...and the two checkpoints really differ in what is reported: return on the validation task (logged
    # at each evaluation by the return-selected fit; the val_loss fit rolled out its final weights once)
    with open(tmp_path / "return" / "progress.csv", newline="") as f:
        val_return = {int(r["step"]): float(r["val/return"]) for r in csv.DictReader(f) if r.get("val/return")}
    worse, better = val_return[5], val_return[10]
    assert better > worse + 20
    assert by_return["selection_score"] == pytest.approx(better, rel=1e-6)
    assert by_loss["final_val"]["return"] == pytest.approx(better, rel=1e-6)
    for done in (by_loss, by_return):
        assert 0 < done["rollout_seconds"] <= done["val_seconds"] <= done["train_seconds"]
