"""validation="train": every non-test task trains; checkpoints are selected by rollouts of training tasks on
fresh episode seeds; the test tasks are never trained on, rolled out or selected on."""
import json

import numpy as np
import pytest

import hyperzero.training.trainer as trainer
from hyperzero.datasets import DatasetWriter, load_dataset
from hyperzero.datasets.splits import make_split
from hyperzero.envs import get_family
from hyperzero.models.config import ModelConfig
from hyperzero.training import FitConfig, fit
from hyperzero.training.data import TaskSampler

FAMILY = "walker-walk"
SPEEDS = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    fam = get_family(FAMILY)
    directory = tmp_path_factory.mktemp("validation") / "dataset"
    writer = DatasetWriter(directory, FAMILY, ["speed"], gamma=0.99)
    rng = np.random.default_rng(0)
    for i, speed in enumerate(SPEEDS):
        e, t = 1, 5
        states = rng.normal(size=(e, t + 1, fam.obs_dim)).astype(np.float32)
        truncated = np.zeros((e, t), bool)
        truncated[:, -1] = True
        writer.add_task({"speed": speed}, {
            "obs": states[:, :-1], "action": rng.uniform(-1, 1, (e, t, 6)).astype(np.float32),
            "reward": np.zeros((e, t), np.float32), "next_obs": states[:, 1:], "terminated": np.zeros((e, t), bool),
            "truncated": truncated, "q": np.zeros((e, t), np.float32),
            "episode_seed": np.array([10 + i], np.int64)}, {"source": "test"})
    writer.finalize()
    return directory


def config(**kw) -> FitConfig:
    base = dict(method="mlp_policy", seed=1, steps=4, eval_interval=2, checkpoint_interval=2, log_interval=2,
                batch_size=8, tasks_per_batch=2, val_samples_per_task=5, val_episodes=1, num_threads=1,
                validation="train", model=ModelConfig(embed_dims=(8, 8, 8), hidden_dim=16))
    base.update(kw)
    return FitConfig(**base)


def short_rollouts(monkeypatch, seen: list):
    """Record which contexts and seeds selection rolls out (and keep the episodes short)."""
    real = trainer.rollout_returns

    def spy(family, context, policy, seeds, **kw):
        seen.append((dict(context), list(seeds)))
        return real(family, context, policy, seeds, max_steps=20)

    monkeypatch.setattr(trainer, "rollout_returns", spy)


def test_every_non_test_task_trains_and_the_test_split_is_unchanged(dataset):
    ds = load_dataset(dataset)
    default = trainer.dataset_split(config(validation=None), ds)
    on_train = trainer.dataset_split(config(), ds)
    assert default.val and not on_train.val
    assert on_train.test == default.test and len(on_train.test) == 3  # the same held-out tasks either way
    assert sorted(on_train.train) == sorted(default.train + default.val)
    assert set(on_train.train) == set(ds.task_ids) - set(on_train.test)


def test_selection_rolls_out_training_tasks_on_fresh_seeds_and_never_a_test_task(dataset, tmp_path, monkeypatch):
    ds = load_dataset(dataset)
    split = trainer.dataset_split(config(), ds)
    sampled, seen = set(), []

    class Spy(TaskSampler):
        def __init__(self, tasks, *a, **kw):
            sampled.update(t.task_id for t in tasks)
            super().__init__(tasks, *a, **kw)

    monkeypatch.setattr(trainer, "TaskSampler", Spy)
    short_rollouts(monkeypatch, seen)
    fit(dataset, tmp_path / "fit", config(), progress=False)
    done = json.loads((tmp_path / "fit" / "done.json").read_text())
    assert done["selection"] == "return" and done["selection_metric"] == "return"
    assert sampled == set(split.train)
    by_speed = {float(t.context["speed"]): t.task_id for t in ds.tasks}
    rolled = {by_speed[float(c["speed"])] for c, _ in seen}
    assert rolled == set(split.train) and not rolled & set(split.test)
    data_seeds = {int(s) for t in ds.tasks for s in t.episode_seed}
    assert all(not set(seeds) & data_seeds for _, seeds in seen)
    saved = json.loads((tmp_path / "fit" / "split.json").read_text())
    assert saved["val"] == [] and saved["test"] == split.test


def test_a_subset_of_training_tasks_spread_over_the_grid(dataset):
    ds = load_dataset(dataset)
    split = trainer.dataset_split(config(), ds)
    chosen = trainer.selection_task_ids(config(val_train_tasks=2), ds, split)
    speeds = sorted(float(t.context["speed"]) for t in ds.tasks if t.task_id in split.train)
    by_id = {t.task_id: float(t.context["speed"]) for t in ds.tasks}
    assert sorted(by_id[i] for i in chosen) == [speeds[0], speeds[-1]]  # the ends of the training range
    assert trainer.selection_task_ids(config(validation=None), ds, split) == split.val == []


def test_the_lr_sweep_selects_on_training_tasks_too(dataset, tmp_path, monkeypatch):
    seen = []
    short_rollouts(monkeypatch, seen)
    fit(dataset, tmp_path / "sweep", config(lr_sweep=[1e-3, 1e-2]), progress=False)
    record = json.loads((tmp_path / "sweep" / "lr_sweep.json").read_text())
    assert record["metric"] == "return" and len(record["candidates"]) == 2


def test_seeds_of_the_dataset_and_a_loss_on_training_samples_are_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="dataset episodes started from"):
        fit(dataset, tmp_path / "clash", config(val_seed=10), progress=False)
    with pytest.raises(ValueError, match="select on the training samples"):
        config(selection="val_loss").check()
    with pytest.raises(ValueError, match="validation"):
        config(validation="tasks").check()
    assert make_split(load_dataset(dataset).task_ids, 1).val  # the default still carves out a val task
