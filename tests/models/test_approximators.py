"""Shapes, gradients, the exact TD term, init options and the generated/exported policies."""
import sys
import subprocess

import numpy as np
import pytest
import torch

from hyperzero.models.base import TaskBatch
from hyperzero.models.config import ModelConfig
from hyperzero.models.embedding import ContextEmbedding
from hyperzero.models.export import NumpyPolicy
from hyperzero.models.heads import per_sample
from hyperzero.models.hyperzero import HyperZero
from hyperzero.models.mlp import ContextMLP
from hyperzero.models.registry import build_method

SMALL = ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16, gamma=0.9)
GENERATING = ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa", "mlp_uvfa_td"]


def batch(k=3, b=5, d=2, s=4, a=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return TaskBatch(context=r(k, d), obs=r(k, b, s), action=torch.tanh(r(k, b, a)), reward=r(k, b),
                     next_obs=r(k, b, s), terminated=(r(k, b) > 1).float(), q=r(k, b))


def test_embedding_shape_init_and_errors():
    e = ContextEmbedding(3)
    assert e(torch.zeros(7, 3)).shape == (7, 256)
    first = e.net[0]
    assert first.weight.abs().max() <= 1 / (2 * 3 ** 0.5) + 1e-7
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in e.modules())
    assert n_linear == 3 + 3 * 2 * 2
    with pytest.raises(ValueError, match="expects 3"):
        e(torch.zeros(2, 2))


@pytest.mark.parametrize("method", GENERATING)
def test_loss_shapes_and_gradients_reach_embedding(method):
    torch.manual_seed(0)
    model = build_method(method, 2, 4, 2, SMALL)
    loss, metrics = model.loss(batch())
    loss.backward()
    assert loss.ndim == 0 and np.isfinite(metrics["loss"])
    assert ("value_loss" in metrics) == model.has_q
    assert ("td_loss" in metrics) == model.use_td
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.embedding.net[0].weight.grad.abs().sum() > 0


def test_td_term_matches_hand_computation_and_stops_gradient_only_on_next_action():
    torch.manual_seed(1)
    cfg = ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16, gamma=0.7, value_weight=0.3, td_weight=0.5)
    model = HyperZero(2, 4, 2, cfg)
    b = batch(k=2, b=6)
    b.terminated[0, :3] = 1.0
    # hand computation, one task and one sample at a time, with explicit generated weights
    z = model.embedding(b.context)
    pol_terms, val_terms, td_terms = [], [], []
    for k in range(2):
        (w1, b1), (w2, b2) = model.pi1(z[k:k + 1]), model.pi2(z[k:k + 1])
        (v1, c1), (v2, c2) = model.q1(z[k:k + 1]), model.q2(z[k:k + 1])
        pi = lambda s: torch.tanh(w2[0] @ torch.relu(w1[0] @ s + b1[0]) + b2[0])  # noqa: E731
        qf = lambda s, a: (v2[0] @ torch.relu(v1[0] @ torch.cat([s, a]) + c1[0]) + c2[0])[0]  # noqa: E731
        for i in range(6):
            pol_terms.append(((pi(b.obs[k, i]) - b.action[k, i]) ** 2).mean())
            val_terms.append((qf(b.obs[k, i], b.action[k, i]) - b.q[k, i]) ** 2)
            target = b.reward[k, i] + 0.7 * (1 - b.terminated[k, i]) * qf(b.next_obs[k, i], pi(b.next_obs[k, i]).detach())
            td_terms.append((b.q[k, i] - target) ** 2)
    expected = torch.stack(pol_terms).mean() + 0.3 * torch.stack(val_terms).mean() + 0.5 * torch.stack(td_terms).mean()
    loss, metrics = model.loss(b)
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert metrics["td_loss"] == pytest.approx(torch.stack(td_terms).mean().item(), rel=1e-5)

    # gradient of the TD term: flows into the Q heads, NOT into the policy heads (next action is stop-grad)
    model.zero_grad()
    model.td_loss(model.generate(b.context), b).backward()
    assert model.q1.weight.weight.grad.abs().sum() > 0 and model.q2.weight.weight.grad.abs().sum() > 0
    assert model.pi1.weight.weight.grad is None or model.pi1.weight.weight.grad.abs().sum() == 0
    assert model.embedding.net[0].weight.grad.abs().sum() > 0


def test_td_discount_is_configurable():
    b = batch()
    losses = []
    for gamma in (0.99, 1.0):
        torch.manual_seed(0)
        m = HyperZero(2, 4, 2, ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16, gamma=gamma))
        losses.append(m.td_loss(m.generate(b.context), b).item())
    assert losses[0] != pytest.approx(losses[1])
    with pytest.raises(ValueError, match="gamma"):
        HyperZero(2, 4, 2, ModelConfig(gamma=1.5))


@pytest.mark.parametrize("method", ["hyperzero", "mlp_uvfa_td"])
def test_value_scale_scales_the_td_residual_and_q_is_unscaled_when_queried(method):
    """κ q* and κ r obey the same Bellman relation: a Q-network that is κ times another has exactly κ times
    its value and TD residuals (losses κ²), the same action loss, and the same un-scaled q() when acting."""
    import dataclasses

    kappa = 0.02
    b = batch(k=2, b=6)
    b.q, b.reward = 40.0 * b.q, 3.0 * b.reward      # experts' units: q* of tens
    torch.manual_seed(0)
    plain = build_method(method, 2, 4, 2, SMALL)
    scaled = build_method(method, 2, 4, 2, dataclasses.replace(SMALL, value_scale=kappa))
    scaled.load_state_dict(plain.state_dict())
    with torch.no_grad():  # make the scaled model's Q exactly κ times the plain one (last Q layer x κ)
        last = [scaled.q2.weight, scaled.q2.bias] if method == "hyperzero" else [scaled.critic.fc2]
        for layer in last:
            layer.weight.mul_(kappa)
            layer.bias.mul_(kappa)
    _, m_plain = plain.loss(b)
    _, m_scaled = scaled.loss(b)
    assert m_scaled["action_loss"] == pytest.approx(m_plain["action_loss"], rel=1e-6)
    assert m_scaled["value_loss"] == pytest.approx(kappa ** 2 * m_plain["value_loss"], rel=1e-4)
    assert m_scaled["td_loss"] == pytest.approx(kappa ** 2 * m_plain["td_loss"], rel=1e-4)
    assert m_plain["value_loss"] > 100  # unscaled targets are large; the scaled ones are O(1)
    obs, act = b.obs[0], b.action[0]
    q_plain, q_scaled = plain.policy(b.context[0]).q(obs, act), scaled.policy(b.context[0]).q(obs, act)
    torch.testing.assert_close(q_scaled, q_plain, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="value_scale"):
        build_method(method, 2, 4, 2, dataclasses.replace(SMALL, value_scale=0.0))


@pytest.mark.parametrize("method", ["hyperzero", "mlp_uvfa_td"])
def test_grouped_equals_per_sample_generation(method):
    torch.manual_seed(0)
    model = build_method(method, 2, 4, 2, SMALL)
    b = batch(k=3, b=4)
    grouped, _ = model.loss(b)
    single, _ = model.loss(per_sample(b))
    assert torch.allclose(grouped, single, rtol=1e-5, atol=1e-6)


def test_head_inits():
    torch.manual_seed(0)
    m = HyperZero(2, 4, 2, SMALL)
    assert m.pi1.weight.weight.abs().max() <= 0.05 and m.pi2.weight.weight.abs().max() <= 0.008
    assert m.pi1.weight.bias.abs().max() == 0 and m.q2.bias.bias.abs().max() == 0
    h = HyperZero(2, 4, 2, ModelConfig(embed_dims=(8, 16, 32), hidden_dim=64, head_init="hyperfan_in"))
    # hyperfan-in: the generated first-layer weights have variance ≈ 2 / (2 · fan_in) = 1 / S over contexts
    nets = h.generate(torch.rand(512, 2) * 2 - 1)
    var = nets.pi.w1.var().item()
    assert 0.25 / 4 < var < 4.0 / 4, var
    with pytest.raises(ValueError, match="head_init"):
        HyperZero(2, 4, 2, ModelConfig(embed_dims=(8, 16, 32), hidden_dim=16, head_init="xavier"))


def test_use_td_without_q_is_rejected():
    with pytest.raises(ValueError, match="use_q"):
        HyperZero(2, 4, 2, SMALL, use_q=False, use_td=True)


@pytest.mark.parametrize("method", ["hyperzero", "mlp_uvfa", "hyperzero_without_q"])
def test_generated_policy_matches_model_and_export(tmp_path, method):
    torch.manual_seed(0)
    model = build_method(method, 2, 4, 2, SMALL)
    ctx = torch.tensor([0.3, -0.5])
    obs = torch.randn(10, 4)
    nets = model.generate(ctx[None])
    expected = nets.act(obs[None])[0]
    pol = model.policy(ctx)
    assert torch.allclose(pol.act(obs), expected, atol=1e-6)
    np.testing.assert_allclose(pol.act(obs.numpy()), expected.detach().numpy(), atol=1e-6)
    assert pol.act(obs[0].numpy()).shape == (2,)
    pol.save_npz(tmp_path / "p.npz", context=[0.3, -0.5])
    npol = NumpyPolicy.load(tmp_path / "p.npz")
    np.testing.assert_allclose(npol.act(obs.numpy()), expected.detach().numpy(), atol=1e-5)
    assert npol.metadata["context"] == [0.3, -0.5]
    pol.save_torchscript(tmp_path / "p.pt")
    ts = torch.jit.load(str(tmp_path / "p.pt"))
    assert torch.allclose(ts(obs), expected, atol=1e-5)
    if model.has_q:
        a = torch.tanh(torch.randn(10, 2))
        q_expected = nets.value(obs[None], a[None])[0]
        assert torch.allclose(pol.q(obs, a), q_expected, atol=1e-5)
        np.testing.assert_allclose(npol.q(obs.numpy(), a.numpy()), q_expected.detach().numpy(), atol=1e-5)
    else:
        with pytest.raises(ValueError, match="no Q"):
            pol.q(obs, obs[:, :2])


def test_numpy_policy_loads_without_torch(tmp_path):
    torch.manual_seed(0)
    HyperZero(2, 4, 2, SMALL).policy(torch.zeros(2)).save_npz(tmp_path / "p.npz")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from hyperzero.models.export import NumpyPolicy\n"
            f"p = NumpyPolicy.load({str(tmp_path / 'p.npz')!r}); print(p.act([0.1, 0.2, 0.3, 0.4]).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2,)"


def test_mlp_first_layer_split_equals_concatenation():
    torch.manual_seed(0)
    m = ContextMLP(2, 4, 2, SMALL, use_q=True)
    b = batch(k=2, b=3)
    z = m.embedding(b.context)
    x = torch.cat([z[:, None].expand(-1, 3, -1), b.obs], -1)
    direct = torch.tanh(m.actor.fc2(torch.relu(m.actor.fc1(x))))
    assert torch.allclose(m.generate(b.context).act(b.obs), direct, atol=1e-6)


def test_context_blind_ignores_the_context_while_mlp_policy_uses_it():
    from hyperzero.models.registry import build_method

    obs = torch.randn(5, 4)
    blind, seeing = build_method("context_blind", 2, 4, 3), build_method("mlp_policy", 2, 4, 3)
    c1, c2 = torch.tensor([0.5, -1.0]), torch.tensor([-0.5, 1.0])
    torch.testing.assert_close(blind.policy(c1).act(obs), blind.policy(c2).act(obs))
    assert not torch.allclose(seeing.policy(c1).act(obs), seeing.policy(c2).act(obs))
