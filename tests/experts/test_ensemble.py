"""Stacked ensembles: members are independent (ensemble member == solo run), state round-trips."""
import numpy as np
import pytest
import torch

from hyperzero.experts import EnsembleTD3, TD3Config, train_group
from hyperzero.experts.networks import StackedLinear, StackedObsNorm

from .helpers import REASSOCIATION, task, tiny


def _weights(task_dir):
    return torch.load(task_dir / "expert.pt", weights_only=True)


@pytest.mark.parametrize("obs_norm", [False, True])
def test_member_in_ensemble_follows_solo_trajectory(tmp_path, obs_norm):
    cfg = tiny(eval_every=0, obs_norm=obs_norm)
    solo = task(tmp_path / "solo", 5, speed=2.0)
    ens = [task(tmp_path / "ens", 3, speed=-4.0), task(tmp_path / "ens", 5, speed=2.0),
           task(tmp_path / "ens", 9, speed=6.0)]
    s_solo = train_group("cheetah-run", [solo], cfg, progress=False)[0]
    s_ens = train_group("cheetah-run", ens, cfg, progress=False)
    a, b = _weights(solo.dir), _weights(ens[1].dir)
    for part in ("actor", "critic"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], **REASSOCIATION)
    assert abs(s_solo["eval_return_mean"] - s_ens[1]["eval_return_mean"]) < 1e-3
    # and members are genuinely different agents (different seeds/tasks -> different weights)
    c = _weights(ens[0].dir)
    assert (c["actor"]["net.layers.0.weight"] - a["actor"]["net.layers.0.weight"]).abs().max() > 1e-2


def test_stacked_linear_matches_per_member_linear():
    g = torch.Generator().manual_seed(0)
    layer = StackedLinear(3, 5, 4)
    for i in range(3):
        layer.reset_member(i, g)
    x = torch.randn(3, 7, 5)
    y = layer(x)
    for i in range(3):
        torch.testing.assert_close(y[i], x[i] @ layer.weight[i] + layer.bias[i])
        w = layer.weight[i]  # orthogonal init: columns (nn.Linear rows) orthonormal
        torch.testing.assert_close(w.T @ w, torch.eye(4), atol=1e-5, rtol=0)


def _random_batch(rng, n, b=16, s=4, a=2):
    return {"obs": rng.normal(size=(n, b, s)).astype(np.float32), "action": rng.uniform(-1, 1, (n, b, a)).astype(np.float32),
            "reward": rng.normal(size=(n, b)).astype(np.float32), "discount": np.full((n, b), 0.99, np.float32),
            "next_obs": rng.normal(size=(n, b, s)).astype(np.float32)}


def test_member_state_round_trip_continues_identically():
    cfg = TD3Config(batch_size=16, hidden_sizes=(16, 16))
    rng = np.random.default_rng(0)
    batches = [_random_batch(rng, 2) for _ in range(12)]
    full = EnsembleTD3(4, 2, cfg, [1, 2])
    for t, b in enumerate(batches[:6]):
        full.update(b, t, update_actor=t % 2 == 0)
    states = [full.member_state(i) for i in range(2)]
    resumed = EnsembleTD3(4, 2, cfg, [1, 2])
    resumed.load_member_states(states)
    for t, b in enumerate(batches[6:], start=6):
        full.update(b, t, update_actor=t % 2 == 0)
        resumed.update(b, t, update_actor=t % 2 == 0)
    for p, q in zip(list(full.critic.parameters()) + list(full.actor_target.parameters()),
                    list(resumed.critic.parameters()) + list(resumed.actor_target.parameters())):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # a fresh agent (no load) diverges, so the comparison above is not vacuous
    fresh = EnsembleTD3(4, 2, cfg, [1, 2])
    for t, b in enumerate(batches[6:], start=6):
        fresh.update(b, t, update_actor=t % 2 == 0)
    assert not torch.equal(fresh.critic.net.layers[0].weight, full.critic.net.layers[0].weight)


def test_bf16_keeps_critic_head_and_losses_fp32():
    cfg = TD3Config(batch_size=16, hidden_sizes=(16, 16), precision="bf16")
    agent = EnsembleTD3(4, 2, cfg, [0, 1])
    m = agent.update(_random_batch(np.random.default_rng(1), 2), 0, update_actor=True)
    assert m["critic_loss"].dtype == np.float32 and np.isfinite(m["critic_loss"]).all()
    obs = torch.randn(2, 3, 4)
    with agent.autocast():
        q = agent.critic(obs, agent.actor(obs))
        h = torch.baddbmm(agent.critic.net.layers[0].bias, torch.randn(4, 3, 6), agent.critic.net.layers[0].weight)
    assert q.dtype == torch.float32 and h.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in agent.critic.parameters())  # master weights stay fp32


def test_a_bf16_agent_acts_for_evaluation_as_the_saved_fp32_expert():
    # evaluation (and the gate) must score the policy that is saved: fp32, whatever the training precision
    bf16 = EnsembleTD3(4, 2, TD3Config(batch_size=16, hidden_sizes=(64, 64), precision="bf16"), [0, 1])
    fp32 = EnsembleTD3(4, 2, TD3Config(batch_size=16, hidden_sizes=(64, 64), precision="fp32"), [0, 1])
    obs = np.random.default_rng(0).normal(size=(2, 32, 4)).astype(np.float32) * 3
    np.testing.assert_array_equal(bf16.act(obs, fp32=True), fp32.act(obs))  # same init, same arithmetic
    assert np.abs(bf16.act(obs) - fp32.act(obs)).max() > 1e-4  # autocast rounds the hidden layers


def test_q1_is_the_first_twin_head():
    agent = EnsembleTD3(4, 2, TD3Config(batch_size=8, hidden_sizes=(16, 16)), [0, 1, 2])
    obs, act = torch.randn(3, 5, 4), torch.rand(3, 5, 2) * 2 - 1
    both = agent.critic(obs, act)
    torch.testing.assert_close(agent.critic.q1(obs, act), both[:, 0])
    assert not torch.allclose(both[:, 0], both[:, 1])  # the twins are distinct networks


def test_observation_statistics_are_each_members_own_running_mean_and_variance():
    rng = np.random.default_rng(0)
    seen = [rng.normal(loc=[0.0, 5.0, -3.0], scale=[1.0, 0.1, 20.0], size=(300, 3)) for _ in range(2)]
    seen[1] = seen[1] * 2 + 7  # the second member sees a different distribution
    norm = StackedObsNorm(2, 3)
    for t in range(0, 300, 50):  # folded in batches of 50, as one pass would be
        norm.observe(torch.as_tensor(np.stack([s[t:t + 50] for s in seen]), dtype=torch.float32))
    for i, s in enumerate(seen):
        np.testing.assert_allclose(norm.mean[i, 0].numpy(), s.mean(0), rtol=1e-4, atol=1e-4)
        # the identity prior (count 1e-4 at mean 0, variance 1) still weighs a little in a variance of 0.01 at mean 5
        np.testing.assert_allclose(norm.var[i, 0].numpy(), s.var(0), rtol=1e-2)
    z = norm(torch.as_tensor(np.stack(seen), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(z.mean(1), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(1), 1.0, rtol=1e-2)
    assert StackedObsNorm(1, 3, clip=5.0)(torch.full((1, 1, 3), 1e3)).max() == 5.0  # outliers are clipped


def test_normalised_networks_share_one_set_of_statistics_and_start_as_the_identity():
    plain = EnsembleTD3(4, 2, TD3Config(batch_size=16, hidden_sizes=(16, 16)), [0, 1])
    normed = EnsembleTD3(4, 2, TD3Config(batch_size=16, hidden_sizes=(16, 16), obs_norm=True), [0, 1])
    obs = np.random.default_rng(0).normal(size=(2, 8, 4)).astype(np.float32) * 3 + 1
    np.testing.assert_allclose(normed.act(obs), plain.act(obs), rtol=1e-4, atol=1e-5)  # nothing observed yet
    normed.observe(obs)
    assert np.abs(normed.act(obs) - plain.act(obs)).max() > 1e-3
    # the critic (one row per head), the targets and the actor normalise with the same statistics
    for mod in (normed.critic, normed.actor_target, normed.critic_target):
        rows = 2 if mod in (normed.critic, normed.critic_target) else 1
        torch.testing.assert_close(mod.obs_norm.mean, normed.actor.obs_norm.mean.repeat_interleave(rows, 0))
        torch.testing.assert_close(mod.obs_norm.var, normed.actor.obs_norm.var.repeat_interleave(rows, 0))


def test_a_saved_normalised_expert_acts_and_values_as_its_learner():
    from hyperzero.experts.policy import ExpertPolicy

    cfg = TD3Config(batch_size=16, hidden_sizes=(16, 16), obs_norm=True)
    agent = EnsembleTD3(4, 2, cfg, [0, 1])
    obs = np.random.default_rng(0).normal(size=(2, 64, 4)).astype(np.float32) * 4 + 2
    agent.observe(obs)
    for i in range(2):
        payload = {"family": "cheetah-run", "context": {}, "task_id": "t", "obs_dim": 4, "act_dim": 2,
                   "train_steps": 1, "seed": i, "hidden_sizes": [16, 16], "config": cfg.to_dict(),
                   **agent.member_networks(i)}
        expert = ExpertPolicy(payload)
        np.testing.assert_allclose(expert.act(obs[i]), agent.act(obs, fp32=True)[i], rtol=1e-5, atol=1e-6)
        act = agent.act(obs, fp32=True)
        q = agent.critic.q1(torch.as_tensor(obs), torch.as_tensor(act))[i].detach().numpy()
        np.testing.assert_allclose(expert.q(obs[i], act[i]), q, rtol=1e-5, atol=1e-5)
