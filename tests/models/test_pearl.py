"""PEARL-style policy: set posterior, no label leakage, KL, zero/few-shot/online acting, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperzero.models.base import TaskBatch
from hyperzero.models.config import ModelConfig
from hyperzero.models.pearl import PEARLPolicy, kl_to_standard_normal, product_of_gaussians
from hyperzero.models.registry import build_method

S, A, D = 3, 2, 2


def small_cfg(**kw) -> ModelConfig:
    base = dict(embed_dims=(8, 8), hidden_dim=16, pearl_latent_dim=4, pearl_context_size=6, pearl_kl_weight=0.1)
    base.update(kw)
    return ModelConfig(**base)


def random_batch(K: int, B: int, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(
        context=torch.randn(K, D, generator=g), obs=torch.randn(K, B, S, generator=g),
        action=torch.rand(K, B, A, generator=g) * 2 - 1, reward=torch.randn(K, B, generator=g),
        next_obs=torch.randn(K, B, S, generator=g), terminated=torch.zeros(K, B), q=torch.zeros(K, B),
    )


def one_task(batch: TaskBatch, k: int, lo: int, hi: int) -> TaskBatch:
    return TaskBatch(**{f: getattr(batch, f)[k:k + 1, lo:hi] for f in
                        ("obs", "action", "reward", "next_obs", "terminated", "q")},
                     context=batch.context[k:k + 1])


def test_product_of_two_gaussians_matches_closed_form():
    mu = torch.tensor([[1.0, -2.0], [3.0, 0.5]])   # two factors, latent dim 2
    var = torch.tensor([[0.5, 4.0], [2.0, 1.0]])
    m, v = product_of_gaussians(mu, var, dim=0)
    (m1, m2), (v1, v2) = mu, var
    torch.testing.assert_close(v, v1 * v2 / (v1 + v2))
    torch.testing.assert_close(m, (m1 * v2 + m2 * v1) / (v1 + v2))


def test_kl_is_nonnegative_zero_at_the_prior_and_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, var = torch.randn(50, 4, generator=g), torch.rand(50, 4, generator=g) * 3 + 0.01
    kl = kl_to_standard_normal(mu, var)
    assert (kl >= 0).all()
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, var.sqrt()), torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, ref, rtol=1e-5, atol=1e-6)
    assert float(kl_to_standard_normal(torch.zeros(4), torch.ones(4)).abs()) < 1e-7


def test_posterior_is_permutation_invariant():
    torch.manual_seed(0)
    model = PEARLPolicy(D, S, A, small_cfg())
    b = random_batch(2, 9, seed=1)
    perm = torch.randperm(9)
    mu, var = model.posterior(b.obs, b.action, b.reward, b.next_obs)
    mu_p, var_p = model.posterior(b.obs[:, perm], b.action[:, perm], b.reward[:, perm], b.next_obs[:, perm])
    torch.testing.assert_close(mu, mu_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, var_p, rtol=1e-5, atol=1e-6)
    # A different set gives a different posterior (the check above is not vacuous).
    mu_other, _ = model.posterior(b.obs[:, :5], b.action[:, :5], b.reward[:, :5], b.next_obs[:, :5])
    assert not torch.allclose(mu, mu_other)


def test_predicted_samples_are_never_in_their_own_context_set():
    """Instrument the encoder and the policy network: record what each sees during loss()."""
    torch.manual_seed(0)
    K, B, C = 3, 10, 6
    model = PEARLPolicy(D, S, A, small_cfg(pearl_context_size=C))
    b = random_batch(K, B, seed=2)  # continuous random values: every row is unique
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, inputs)  # the first call is the training prediction (then the z=0 metric)
        return hook

    model.encoder.register_forward_hook(record("encoder"))
    model.net.register_forward_hook(record("policy"))
    for _ in range(5):  # the split is random: check several draws
        seen.clear()
        model.loss(b)
        enc_obs, enc_act = seen["encoder"][0], seen["encoder"][1]
        pred_obs = seen["policy"][1]
        assert enc_obs.shape == (K, C, S) and pred_obs.shape == (K, B - C, S)
        for k in range(K):
            # Each predicted observation is one of the task's own rows, and none is in the context set.
            in_task = (pred_obs[k][:, None] == b.obs[k][None]).all(-1).any(-1)
            in_context = (pred_obs[k][:, None] == enc_obs[k][None]).all(-1).any(-1)
            assert in_task.all() and not in_context.any()
            # Together the two parts cover the task's samples exactly once.
            rows = torch.cat([enc_obs[k], pred_obs[k]])
            assert torch.equal(rows[torch.argsort(rows[:, 0])], b.obs[k][torch.argsort(b.obs[k][:, 0])])
            # And the target actions of the predicted samples never reach the encoder.
            pred_idx = (pred_obs[k][:, None] == b.obs[k][None]).all(-1).float().argmax(-1)
            targets = b.action[k, pred_idx]
            assert not (targets[:, None] == enc_act[k][None]).all(-1).any()


def test_loss_shapes_metrics_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = PEARLPolicy(D, S, A, small_cfg())
    loss, metrics = model.loss(random_batch(4, 12, seed=3))
    assert loss.dim() == 0
    assert {"loss", "action_loss", "kl", "prior_z_action_loss", "posterior_std"} <= set(metrics)
    assert metrics["kl"] >= 0
    assert metrics["loss"] == pytest.approx(metrics["action_loss"] + 0.1 * metrics["kl"], rel=1e-5)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_zero_shot_uses_prior_mean_and_adapt_uses_posterior_mean():
    torch.manual_seed(0)
    model = PEARLPolicy(D, S, A, small_cfg())
    b = random_batch(1, 20, seed=4)
    ctx, support, obs = b.context[0], one_task(b, 0, 0, 5), b.obs[0, 5:]
    zero = model.policy(ctx)
    assert torch.equal(zero.z, torch.zeros(4))
    torch.testing.assert_close(zero.act(obs), model.net(ctx, obs, torch.zeros(4)).detach(), rtol=1e-5, atol=1e-6)

    few = model.adapt(ctx, support)
    mu, _ = model.posterior(support.obs, support.action, support.reward, support.next_obs)
    torch.testing.assert_close(few.z, mu[0].detach())
    assert float(few.z.abs().max()) > 0  # k transitions moved z off the prior mean
    torch.testing.assert_close(few.act(obs), model.net(ctx, obs, mu[0]).detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(few.act(obs), zero.act(obs))
    # Deterministic: the mean, not a sample.
    torch.testing.assert_close(model.adapt(ctx, support).act(obs), few.act(obs))


def test_online_policy_accumulates_per_episode_and_resets():
    torch.manual_seed(0)
    model = PEARLPolicy(D, S, A, small_cfg())
    b = random_batch(1, 20, seed=5)
    ctx, support, obs = b.context[0], one_task(b, 0, 0, 5), b.obs[0, 5:]
    online = model.online_policy(ctx)
    torch.testing.assert_close(online.act(obs), model.policy(ctx).act(obs))
    for i in range(5):  # one transition per env step, as numpy, like an evaluator would
        online.observe(support.obs[0, i].numpy(), support.action[0, i].numpy(),
                       float(support.reward[0, i]), support.next_obs[0, i].numpy())
    assert online.num_observed == 5
    few = model.adapt(ctx, support)
    torch.testing.assert_close(online.z, few.z, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(online.act(obs), few.act(obs), rtol=1e-4, atol=1e-6)
    online.reset()  # new episode: forget the previous one's transitions
    assert online.num_observed == 0 and torch.equal(online.z, torch.zeros(4))
    torch.testing.assert_close(online.act(obs), model.policy(ctx).act(obs))
    single = online.act(obs[0].numpy())
    assert isinstance(single, np.ndarray) and single.shape == (A,)


def test_latent_lets_few_shot_beat_zero_shot_when_context_is_uninformative():
    """a* = tanh(g·s) with a constant context: only the transitions reveal the gain g."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def family(gains, B):
        K = len(gains)
        s = torch.rand(K, B, 1, generator=gen) * 4 - 2
        zeros = torch.zeros(K, B)
        return TaskBatch(context=torch.zeros(K, 1), obs=s, action=torch.tanh(gains.view(K, 1, 1) * s),
                         reward=zeros, next_obs=s, terminated=zeros, q=zeros)

    cfg = ModelConfig(embed_dims=(16,), hidden_dim=32, pearl_latent_dim=2, pearl_context_size=10, pearl_kl_weight=0.01)
    model = PEARLPolicy(1, 1, 1, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = model.loss(family(torch.rand(8, generator=gen) * 4 - 2, 30))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = family(torch.tensor([-1.8, -1.0, -0.4, 0.5, 1.2, 1.9]), 60)
    zero, few = [], []
    for k in range(test.num_tasks):
        q_obs, q_act = test.obs[k, 10:], test.action[k, 10:]
        zero.append(float(((model.policy(test.context[k]).act(q_obs) - q_act) ** 2).mean()))
        few.append(float(((model.adapt(test.context[k], one_task(test, k, 0, 10)).act(q_obs) - q_act) ** 2).mean()))
    assert np.mean(few) < 0.2 * np.mean(zero), (np.mean(zero), np.mean(few))


def test_registry_builds_pearl():
    model = build_method("pearl", D, S, A, small_cfg())
    assert isinstance(model, PEARLPolicy) and model.is_meta and not model.has_q


@pytest.mark.parametrize("bad, match", [
    (dict(pearl_latent_dim=0), "pearl_latent_dim"),
    (dict(pearl_context_size=0), "pearl_context_size"),
    (dict(pearl_kl_weight=-1.0), "pearl_kl_weight"),
])
def test_bad_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        PEARLPolicy(D, S, A, small_cfg(**bad))


def test_bad_inputs_raise_value_errors_naming_the_fix():
    model = PEARLPolicy(D, S, A, small_cfg(pearl_context_size=6))
    with pytest.raises(ValueError, match="pearl_context_size"):
        model.loss(random_batch(2, 6))  # nothing left to predict
    b = random_batch(2, 8)
    with pytest.raises(ValueError, match="exactly one task"):
        model.adapt(b.context[0], b)
    with pytest.raises(ValueError, match="context"):
        model.policy(torch.zeros(D + 1))
    online = model.online_policy(b.context[0])
    with pytest.raises(ValueError, match="same number of transitions"):
        online.observe(torch.zeros(2, S), torch.zeros(3, A), torch.zeros(2), torch.zeros(2, S))


def test_validation_loss_uses_posterior_mean_and_a_fixed_split():
    torch.manual_seed(0)
    model = PEARLPolicy(D, S, A, small_cfg())
    b = random_batch(3, 12, seed=7)
    _, m1 = model.validation_loss(b)
    _, m2 = model.validation_loss(b)
    assert m1 == m2  # no sampled z, no random split
    _, t1 = model.loss(b)
    _, t2 = model.loss(b)
    assert t1["action_loss"] != t2["action_loss"]  # training samples z and the split


def test_training_draws_some_latents_from_the_prior_the_zero_shot_policy_acts_with():
    """Zero-shot acting uses z = 0, the prior mean; training must show the policy latents from that prior
    (an empty context set), or z = 0 may be an input it never saw."""
    seen = []
    b = random_batch(400, 8, seed=5)
    for prob in (0.0, 0.5):
        torch.manual_seed(0)
        model = PEARLPolicy(D, S, A, small_cfg(pearl_prior_prob=prob, pearl_context_size=4))
        with torch.no_grad():  # a sharp posterior at z = 5: its samples are unmistakable
            last = model.encoder.net[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor([5.0] * 4 + [-30.0] * 4))
        forward = model.net.forward
        model.net.forward = lambda c, o, z=None: (seen.append(z.detach()), forward(c, o, z))[1]
        seen.clear()
        _, metrics = model.loss(b)
        z = seen[0]
        posterior = ((z - 5.0).abs() < 0.01).all(-1)
        if prob == 0.0:
            assert posterior.all() and metrics["kl"] > 10
        else:
            prior = z[~posterior]
            assert 0.4 < prior.shape[0] / z.shape[0] < 0.6
            assert abs(float(prior.mean())) < 0.15 and 0.85 < float(prior.std()) < 1.15   # N(0, I) draws
            # the KL term counts only the tasks that used their posterior
            full_kl = float(kl_to_standard_normal(torch.full((4,), 5.0), torch.full((4,), 1e-7)))
            assert metrics["kl"] == pytest.approx(full_kl * float(posterior.float().mean()), rel=1e-3)
    assert model.zero_shot_metric == "prior_z_action_loss" and "prior_z_action_loss" in metrics
    with pytest.raises(ValueError, match="pearl_prior_prob"):
        PEARLPolicy(D, S, A, small_cfg(pearl_prior_prob=1.0))
