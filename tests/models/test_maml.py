"""MAML meta-policy: the inner loop, first- vs second-order gradients, k-shot adaptation, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hyperzero.models.base import TaskBatch
from hyperzero.models.config import ModelConfig
from hyperzero.models.maml import MAMLPolicy
from hyperzero.models.registry import build_method

S, A, D = 3, 2, 2


def small_cfg(**kw) -> ModelConfig:
    base = dict(embed_dims=(8, 8), hidden_dim=16, maml_inner_lr=0.1, maml_inner_steps=3, maml_support_size=5)
    base.update(kw)
    return ModelConfig(**base)


def random_batch(K: int, B: int, seed: int = 0, context: torch.Tensor | None = None) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(K, B)
    return TaskBatch(
        context=torch.randn(K, D, generator=g) if context is None else context,
        obs=torch.randn(K, B, S, generator=g),
        action=torch.rand(K, B, A, generator=g) * 2 - 1,
        reward=torch.randn(K, B, generator=g), next_obs=torch.randn(K, B, S, generator=g),
        terminated=zeros, q=zeros,
    )


def one_task(batch: TaskBatch, k: int, lo: int, hi: int) -> TaskBatch:
    return TaskBatch(**{f: getattr(batch, f)[k:k + 1, lo:hi] for f in
                        ("obs", "action", "reward", "next_obs", "terminated", "q")},
                     context=batch.context[k:k + 1])


def reference_outer_loss(model: MAMLPolicy, b: TaskBatch, n_sup: int, inner_grad_mode: str) -> torch.Tensor:
    """MAML written the plain way: a Python loop over tasks, one functional_call per step.

    inner_grad_mode: "second" keeps the inner gradients differentiable; "detached" treats them as
    constants (`.detach()`), which is the definition of first-order MAML.
    """
    cfg, total = model.cfg, 0.0
    for k in range(b.num_tasks):
        params = dict(model.net.named_parameters())
        for _ in range(cfg.maml_inner_steps):
            pred = functional_call(model.net, params, (b.context[k], b.obs[k, :n_sup]))
            inner = ((pred - b.action[k, :n_sup]) ** 2).mean()
            grads = torch.autograd.grad(inner, list(params.values()), create_graph=inner_grad_mode == "second")
            if inner_grad_mode == "detached":
                grads = [g.detach() for g in grads]
            params = {n: p - cfg.maml_inner_lr * g for (n, p), g in zip(params.items(), grads)}
        pred = functional_call(model.net, params, (b.context[k], b.obs[k, n_sup:]))
        total = total + ((pred - b.action[k, n_sup:]) ** 2).mean()
    return total / b.num_tasks


def vectorised_outer_loss(model: MAMLPolicy, b: TaskBatch, n_sup: int, create_graph: bool) -> torch.Tensor:
    adapted = model.inner_loop(b.context, b.obs[:, :n_sup], b.action[:, :n_sup], create_graph=create_graph)
    return model._task_mse(adapted, b.context, b.obs[:, n_sup:], b.action[:, n_sup:]).mean()


def grads_of(model, loss):
    return [g.clone() for g in torch.autograd.grad(loss, list(model.parameters()))]


def test_inner_loop_reduces_support_loss():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    b = random_batch(3, 5, seed=1)
    meta = {n: p.unsqueeze(0).expand(3, *p.shape) for n, p in model.net.named_parameters()}
    before = model._task_mse(meta, b.context, b.obs, b.action)
    adapted = model.inner_loop(b.context, b.obs, b.action, create_graph=False)
    after = model._task_mse(adapted, b.context, b.obs, b.action)
    assert (after < before).all(), (before, after)


def test_vectorised_inner_loop_matches_per_task_loop_second_and_first_order():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    b = random_batch(3, 12, seed=2)
    so = grads_of(model, vectorised_outer_loss(model, b, 5, create_graph=True))
    fo = grads_of(model, vectorised_outer_loss(model, b, 5, create_graph=False))
    so_ref = grads_of(model, reference_outer_loss(model, b, 5, "second"))
    fo_ref = grads_of(model, reference_outer_loss(model, b, 5, "detached"))
    for g, r in zip(so, so_ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # First-order MAML = the meta-gradient with the inner gradients treated as constants.
    for g, r in zip(fo, fo_ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # ...and the second-order terms are really there: the two meta-gradients differ.
    diff = max(float((a - c).abs().max()) for a, c in zip(so, fo))
    scale = max(float(a.abs().max()) for a in so)
    assert diff > 1e-3 * scale


def test_loss_metrics_gradients_and_first_order_flag():
    torch.manual_seed(0)
    b = random_batch(4, 9, seed=3)
    for first_order in (False, True):
        model = MAMLPolicy(D, S, A, small_cfg(maml_first_order=first_order))
        loss, metrics = model.loss(b)
        assert {"loss", "action_loss", "pre_adapt_mse", "post_adapt_mse"} <= set(metrics)
        assert metrics["post_adapt_mse"] == pytest.approx(float(loss.detach()))
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_loss_works_under_no_grad_for_validation():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    with torch.no_grad():
        loss, metrics = model.loss(random_batch(2, 8, seed=4))
    assert np.isfinite(metrics["post_adapt_mse"]) and np.isfinite(metrics["pre_adapt_mse"])
    assert float(loss) == pytest.approx(metrics["post_adapt_mse"])


def test_zero_shot_policy_is_the_meta_init_and_accepts_numpy():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    ctx, obs = torch.randn(D), torch.randn(7, S)
    pol = model.policy(ctx)
    torch.testing.assert_close(pol.act(obs), model.net(ctx, obs).detach(), rtol=1e-5, atol=1e-6)
    single = pol.act(obs[0].numpy())
    assert isinstance(single, np.ndarray) and single.shape == (A,)
    np.testing.assert_allclose(single, pol.act(obs)[0].numpy(), rtol=1e-5, atol=1e-6)


def test_adapt_runs_the_inner_loop_on_k_transitions_without_touching_meta_params():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    b = random_batch(1, 30, seed=5)
    ctx, support, query = b.context[0], one_task(b, 0, 0, 4), b.obs[0, 4:]
    before = [p.detach().clone() for p in model.parameters()]
    adapted = model.adapt(ctx, support)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)  # adaptation works on a copy
    assert all(p.grad is None for p in model.parameters())
    # Same result as the training inner loop on those k transitions.
    params = model.inner_loop(b.context, support.obs, support.action, create_graph=False)
    expected = functional_call(model.net, {n: p[0] for n, p in params.items()}, (ctx, query))
    torch.testing.assert_close(adapted.act(query), expected.detach(), rtol=1e-5, atol=1e-6)
    support_mse = lambda pol: float(((pol.act(support.obs[0]) - support.action[0]) ** 2).mean())
    assert support_mse(adapted) < support_mse(model.policy(ctx))


def _gain_family(gains: torch.Tensor, B: int, gen: torch.Generator) -> TaskBatch:
    """a* = tanh(g·s): the gain g is the task, and the context is a constant (uninformative)."""
    K = len(gains)
    s = torch.rand(K, B, 1, generator=gen) * 4 - 2
    zeros = torch.zeros(K, B)
    return TaskBatch(context=torch.zeros(K, 1), obs=s, action=torch.tanh(gains.view(K, 1, 1) * s),
                     reward=zeros, next_obs=s, terminated=zeros, q=zeros)


def test_meta_training_makes_few_shot_beat_zero_shot_when_context_is_uninformative():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = ModelConfig(embed_dims=(16,), hidden_dim=32, maml_inner_lr=0.1, maml_inner_steps=5, maml_support_size=10)
    model = MAMLPolicy(1, 1, 1, cfg)
    test = _gain_family(torch.tensor([-1.8, -1.0, -0.4, 0.5, 1.2, 1.9]), 60, gen)  # held-out gains

    def evaluate():
        zero, few = [], []
        for k in range(test.num_tasks):
            q_obs, q_act = test.obs[k, 10:], test.action[k, 10:]
            zero.append(float(((model.policy(test.context[k]).act(q_obs) - q_act) ** 2).mean()))
            few.append(float(((model.adapt(test.context[k], one_task(test, k, 0, 10)).act(q_obs) - q_act) ** 2).mean()))
        return np.mean(zero), np.mean(few)

    _, few_before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss, _ = model.loss(_gain_family(torch.rand(8, generator=gen) * 4 - 2, 20, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    zero_after, few_after = evaluate()
    # The context says nothing, so zero-shot can only predict the family average (MSE ~0.5);
    # 10 transitions and 5 inner steps must recover the gain, and meta-training must help that.
    assert few_after < 0.2 * zero_after, (zero_after, few_after)
    assert few_after < 0.5 * few_before, (few_before, few_after)


def test_registry_builds_maml():
    model = build_method("maml", D, S, A, small_cfg())
    assert isinstance(model, MAMLPolicy) and model.is_meta and not model.has_q


@pytest.mark.parametrize("bad, match", [
    (dict(maml_inner_steps=0), "maml_inner_steps"),
    (dict(maml_inner_lr=0.0), "maml_inner_lr"),
    (dict(maml_support_size=0), "maml_support_size"),
])
def test_bad_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        MAMLPolicy(D, S, A, small_cfg(**bad))


def test_bad_inputs_raise_value_errors_naming_the_fix():
    model = MAMLPolicy(D, S, A, small_cfg(maml_support_size=5))
    with pytest.raises(ValueError, match="maml_support_size"):
        model.loss(random_batch(2, 5))  # no query sample left
    b = random_batch(2, 8)
    with pytest.raises(ValueError, match="exactly one task"):
        model.adapt(b.context[0], b)
    with pytest.raises(ValueError, match="context"):
        model.policy(torch.zeros(D + 1))
    with pytest.raises(ValueError, match="obs"):
        model.policy(torch.zeros(D)).act(torch.zeros(4, S + 1))


def test_validation_loss_is_deterministic_and_builds_no_second_order_graph():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg())
    b = random_batch(3, 12, seed=6)
    l1, m1 = model.validation_loss(b)
    l2, m2 = model.validation_loss(b)
    assert m1 == m2  # fixed support/query split: a steady curve for best.pt
    _, m_train = model.loss(b)
    assert m_train["post_adapt_mse"] != m1["post_adapt_mse"]  # training splits are random
    assert float(l1.detach()) == pytest.approx(m1["post_adapt_mse"])


def test_head_only_inner_loop_adapts_the_head_and_meta_learns_the_embedding():
    torch.manual_seed(0)
    model = MAMLPolicy(D, S, A, small_cfg(), inner_params="head")
    b = random_batch(3, 12, seed=8)
    adapted = model.inner_loop(b.context, b.obs[:, :5], b.action[:, :5], create_graph=True)
    assert set(adapted) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    before = model._task_mse(model.meta_params(3), b.context, b.obs[:, :5], b.action[:, :5])
    after = model._task_mse(adapted, b.context, b.obs[:, :5], b.action[:, :5])
    assert (after < before).all()
    loss, _ = model.loss(b)
    loss.backward()
    for name, p in model.net.embed.named_parameters():  # the outer loop still trains the embedding
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    ctx, support = b.context[0], one_task(b, 0, 0, 5)
    few = model.adapt(ctx, support)
    assert not torch.allclose(few.act(b.obs[0]), model.policy(ctx).act(b.obs[0]))
    with pytest.raises(ValueError, match="inner_params"):
        MAMLPolicy(D, S, A, small_cfg(), inner_params="embedding")
