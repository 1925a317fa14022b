"""γ flows from the experts' config (summary.json `config.gamma`) to the dataset manifest and to the TD loss."""
import json

import numpy as np
import pytest

from hyperzero.datasets import DatasetError, collect_dataset, load_dataset
from hyperzero.envs import context_id, get_family
from hyperzero.models.config import ModelConfig
from hyperzero.training import FitConfig, fit, load_fit

FAMILY = "cheetah-run"


class StillExpert:
    """A stand-in expert (no TD3 training needed): does nothing; its critic returns the first observation."""

    def act(self, obs):
        return np.zeros((len(obs), get_family(FAMILY).act_dim), np.float32)

    def q(self, obs, action):
        return np.asarray(obs, np.float32)[:, 0]


def experts_dir(tmp_path, gammas):
    d = tmp_path / "experts"
    space = get_family(FAMILY).context_space
    for speed, gamma in zip((-2.0, 2.0, 4.0), gammas):
        ctx = space.validate({"speed": speed})
        (d / context_id(ctx)).mkdir(parents=True)
        (d / context_id(ctx) / "summary.json").write_text(json.dumps(
            {"task_id": context_id(ctx), "family": FAMILY, "context": ctx, "finished": True, "flagged": False,
             "config": {"gamma": gamma}}))
    return d


def test_dataset_and_td_loss_use_the_experts_discount(tmp_path):
    experts = experts_dir(tmp_path, [0.9, 0.9, 0.9])
    out = collect_dataset(experts, tmp_path / "dataset", n_episodes=1, seed=0, progress=False,
                          expert_loader=lambda d: StillExpert())
    ds = load_dataset(out)
    assert ds.gamma == pytest.approx(0.9)
    rtg = ds.tasks[0].return_to_go[0]
    assert rtg[-2] == pytest.approx(ds.tasks[0].reward[0, -2] + 0.9 * rtg[-1], rel=1e-5)  # the dataset's own γ
    fit(ds, tmp_path / "fit", FitConfig(method="hyperzero", steps=2, eval_interval=2, batch_size=16,
                                        tasks_per_batch=2, val_samples_per_task=8, selection="last",
                                        model=ModelConfig(embed_dims=(8, 8, 8), hidden_dim=8)), progress=False)
    info = json.loads((tmp_path / "fit" / "run_info.json").read_text())
    assert info["effective"]["td_gamma"] == pytest.approx(0.9)
    assert load_fit(tmp_path / "fit").model.cfg.gamma == pytest.approx(0.9)   # what td_loss multiplies by


def test_disagreeing_discounts_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="different discounts"):
        collect_dataset(experts_dir(tmp_path / "a", [0.9, 0.99, 0.9]), tmp_path / "a" / "ds", n_episodes=1,
                        progress=False, expert_loader=lambda d: StillExpert())
    with pytest.raises(DatasetError, match="gamma=0.99 was requested"):
        collect_dataset(experts_dir(tmp_path / "b", [0.9] * 3), tmp_path / "b" / "ds", n_episodes=1, gamma=0.99,
                        progress=False, expert_loader=lambda d: StillExpert())
