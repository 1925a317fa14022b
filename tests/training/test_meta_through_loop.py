"""MAML and PEARL train through the same fit loop (their `loss` splits support/query or context sets)."""
import json

import numpy as np
import pytest

from hyperzero.models.config import ModelConfig
from hyperzero.training import FitConfig, fit, load_fit
from hyperzero.training.synthetic import make_synthetic_dataset


@pytest.mark.parametrize("method", ["maml", "pearl"])
def test_meta_methods_fit_validate_and_adapt(method, tmp_path):
    ds = make_synthetic_dataset(n_tasks=10, n_episodes=1, episode_length=60, seed=2)
    cfg = FitConfig(method=method, steps=6, eval_interval=3, checkpoint_interval=3, log_interval=3, batch_size=256,
                    tasks_per_batch=4, val_samples_per_task=64, model=ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16,
                                                                                  maml_inner_steps=1))
    fit(ds, tmp_path, cfg, progress=False)
    done = json.load(open(tmp_path / "done.json"))
    assert done["selected"] == "best" and np.isfinite(done["best_val"])
    # the zero-shot row is selected on the zero-shot quantity, not on the post-adaptation loss it trains on
    zero_shot = {"maml": "pre_adapt_mse", "pearl": "prior_z_action_loss"}[method]
    assert done["selection_metric"] == "zero_shot_action_loss"
    assert done["final_val"]["zero_shot_action_loss"] == done["final_val"][zero_shot]
    assert done["final_val"]["zero_shot_action_loss"] != done["final_val"]["action_loss"]
    tm = load_fit(tmp_path)
    assert tm.is_meta
    t = ds.tasks[0]
    obs = t.obs[0]
    assert np.asarray(tm.policy(t.context).act(obs)).shape == (60, 2)
    support = {"obs": obs[:40], "action": t.action[0, :40], "reward": t.reward[0, :40], "next_obs": t.next_obs[0, :40]}
    assert np.asarray(tm.adapt(t.context, support).act(obs)).shape == (60, 2)
