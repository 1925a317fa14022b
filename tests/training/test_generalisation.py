"""On a synthetic family with a known context-dependent optimal policy a*(s; c) = tanh(K(c) s),
HyperZero fits the training tasks and predicts held-out contexts, much better than a context-blind MLP."""
import dataclasses
import json

import numpy as np
import pytest

from hyperzero.models.config import ModelConfig
from hyperzero.training import FitConfig, fit, load_fit
from hyperzero.training.synthetic import make_synthetic_dataset

CFG = dict(steps=1000, eval_interval=250, checkpoint_interval=1000, log_interval=250, batch_size=128,
           tasks_per_batch=8, lr=1e-3, val_samples_per_task=128,
           model=ModelConfig(embed_dims=(16, 32, 64), hidden_dim=64))


def action_mse(tm, ds, ids, blind=False):
    errs = []
    for t in ds.tasks:
        if t.task_id in ids:
            obs = t.obs.reshape(-1, ds.obs_dim)
            ctx = {"c0": 0.0} if blind else t.context
            errs.append(np.mean((tm.policy(ctx).act(obs) - ds.optimal_action(t.context_vector, obs)) ** 2))
    return float(np.mean(errs))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    ds = make_synthetic_dataset(np.linspace(-2, 2, 21)[:, None], n_episodes=1, episode_length=100, seed=0)
    out = tmp_path_factory.mktemp("fits")
    hz = load_fit(fit(ds, out / "hz", FitConfig(method="hyperzero_without_q", seed=0, **CFG), progress=False))
    # context-blind: the same MLP baseline, but every task's context is replaced by the same constant
    blind_ds = dataclasses.replace(ds, tasks=[dataclasses.replace(t, context_vector=np.zeros(1, np.float32))
                                              for t in ds.tasks])
    blind = load_fit(fit(blind_ds, out / "blind", FitConfig(method="mlp_policy", seed=0, **CFG), progress=False))
    return ds, hz, blind


def test_hyperzero_fits_train_and_generalises_to_held_out_contexts(fitted):
    ds, hz, blind = fitted
    train_err = action_mse(hz, ds, hz.split.train)
    test_err = action_mse(hz, ds, hz.split.test)
    blind_err = action_mse(blind, ds, hz.split.test, blind=True)
    assert blind.split.test == hz.split.test and len(hz.split.test) == 3
    # what the context-dependent policy spreads: the variance of a* across contexts
    print(json.dumps(dict(train=train_err, test=test_err, blind=blind_err)))
    assert train_err < 0.01
    assert test_err < 0.02
    assert test_err < 0.2 * blind_err
