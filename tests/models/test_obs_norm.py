"""Observation normalisation: every method learns on normalised observations, and every policy it hands out
(generated, few-shot adapted, exported npz and TorchScript) acts on raw observations with the same result."""
import dataclasses

import numpy as np
import pytest
import torch

from hyperzero.models.base import ObsNormalizer, TaskBatch, observation_statistics
from hyperzero.models.config import ModelConfig
from hyperzero.models.export import NumpyPolicy
from hyperzero.models.registry import METHODS, build_method

CFG = ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16, gamma=0.9, obs_norm=True, maml_support_size=3,
                  pearl_context_size=3)
S, A, D = 5, 2, 2
MEAN = torch.tensor([0.5, -3.0, 10.0, 0.0, 1.0])
STD = torch.tensor([0.1, 4.0, 20.0, 1.0, 0.5])


def batch(k=2, b=8, seed=0, scale=None):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    obs, next_obs = r(k, b, S) * STD + MEAN, r(k, b, S) * STD + MEAN
    return TaskBatch(context=r(k, D), obs=obs, action=torch.tanh(r(k, b, A)), reward=r(k, b), next_obs=next_obs,
                     terminated=torch.zeros(k, b), q=r(k, b))


def model_with_statistics(method: str):
    torch.manual_seed(0)
    model = build_method(method, D, S, A, CFG)
    model.obs_norm.set_statistics(MEAN, STD)
    return model


@pytest.mark.parametrize("method", list(METHODS))
def test_the_loss_sees_normalised_observations(method):
    """The normalised model's loss on raw data equals the plain model's loss on data normalised by hand."""
    model = model_with_statistics(method)
    plain = build_method(method, D, S, A, dataclasses.replace(CFG, obs_norm=False))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("obs_norm.")})
    raw = batch()
    by_hand = dataclasses.replace(raw, obs=(raw.obs - MEAN) / STD, next_obs=(raw.next_obs - MEAN) / STD)
    fn = getattr(model, "validation_loss", model.loss)  # deterministic for the meta methods
    with torch.no_grad():
        torch.manual_seed(1)
        _, ours = fn(raw)
        torch.manual_seed(1)
        _, theirs = getattr(plain, "validation_loss", plain.loss)(by_hand)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("method", list(METHODS))
def test_policies_act_on_raw_observations(method, tmp_path):
    model = model_with_statistics(method)
    plain = build_method(method, D, S, A, dataclasses.replace(CFG, obs_norm=False))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("obs_norm.")})
    context = torch.tensor([0.3, -0.2])
    raw = batch(k=1, b=6, seed=3).obs[0]
    expected = plain.policy(context).act((raw - MEAN) / STD)
    policy = model.policy(context)
    torch.testing.assert_close(policy.act(raw), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(policy.act(raw.numpy()), expected.numpy(), rtol=1e-4, atol=1e-5)
    policy.save_npz(tmp_path / "p.npz")
    np.testing.assert_allclose(NumpyPolicy.load(tmp_path / "p.npz").act(raw.numpy()), expected.numpy(),
                               rtol=1e-4, atol=1e-5)
    policy.save_torchscript(tmp_path / "p.pt")
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "p.pt"))(raw), expected, rtol=1e-4, atol=1e-5)
    if policy.has_q:
        a = torch.tanh(torch.randn(6, A))
        torch.testing.assert_close(policy.q(raw, a), plain.policy(context).q((raw - MEAN) / STD, a),
                                   rtol=1e-4, atol=1e-4)
    if model.is_meta:  # few-shot adaptation sees normalised support transitions too
        support = batch(k=1, b=6, seed=4)
        by_hand = dataclasses.replace(support, obs=(support.obs - MEAN) / STD,
                                      next_obs=(support.next_obs - MEAN) / STD)
        torch.testing.assert_close(model.adapt(context, support).act(raw), plain.adapt(context, by_hand).act(
            (raw - MEAN) / STD), rtol=1e-4, atol=1e-5)


def test_online_pearl_normalises_what_it_observes():
    model = model_with_statistics("pearl")
    plain = build_method("pearl", D, S, A, dataclasses.replace(CFG, obs_norm=False))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("obs_norm.")})
    context = torch.tensor([0.1, 0.4])
    t = batch(k=1, b=4, seed=5)
    ours, theirs = model.online_policy(context), plain.online_policy(context)
    ours.observe(t.obs[0], t.action[0], t.reward[0], t.next_obs[0])
    theirs.observe((t.obs[0] - MEAN) / STD, t.action[0], t.reward[0], (t.next_obs[0] - MEAN) / STD)
    torch.testing.assert_close(ours.z, theirs.z, rtol=1e-4, atol=1e-5)


def test_statistics_are_saved_with_the_weights_and_floored():
    model = model_with_statistics("hyperzero")
    state = model.state_dict()
    assert torch.equal(state["obs_norm.mean"], MEAN) and torch.equal(state["obs_norm.std"], STD)
    fresh = build_method("hyperzero", D, S, A, CFG)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.policy(torch.zeros(D)).act(MEAN[None]), model.policy(torch.zeros(D)).act(MEAN[None]))
    norm = ObsNormalizer(3)
    norm.set_statistics([0.0, 1.0, 2.0], [0.0, 1e-9, 3.0])  # constant features are not blown up
    assert norm.std.tolist() == pytest.approx([ObsNormalizer.MIN_STD, ObsNormalizer.MIN_STD, 3.0])
    with pytest.raises(ValueError, match="expects 3"):
        norm.set_statistics([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="not finite"):
        norm.set_statistics([0.0, float("nan"), 0.0], [1.0, 1.0, 1.0])


def test_observation_statistics_pool_every_array():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(2, 50, 4)), rng.normal(-1.0, 0.5, size=(1, 30, 4))]
    mean, std = observation_statistics(parts)
    pooled = np.concatenate([p.reshape(-1, 4) for p in parts])
    np.testing.assert_allclose(mean, pooled.mean(0), rtol=1e-10)
    np.testing.assert_allclose(std, pooled.std(0), rtol=1e-8)
    with pytest.raises(ValueError, match="no observations"):
        observation_statistics([])
