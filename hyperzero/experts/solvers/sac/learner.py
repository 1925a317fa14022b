"""EnsembleSAC: N independent SAC agents (Haarnoja et al. 2018, automatic entropy tuning) with stacked weights.

Per member: a tanh-Gaussian actor, twin critics with a Polyak target, and its own temperature alpha =
exp(log_alpha[i]). Independence as for TD3 (StackedLearner): losses are sums over members of their own means,
and every draw (init, exploration, replay indices, the policy's reparameterisation noise) comes from the
member's own generators.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from hyperzero.experts.solvers.base import StackedLearner, adam
from hyperzero.experts.solvers.sac.config import SACConfig
from hyperzero.experts.solvers.sac.networks import EnsembleGaussianActor, make_networks


class LogAlpha(nn.Module):
    """Each member's log temperature: log_alpha [N]."""

    def __init__(self, n: int, init_alpha: float):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((n,), math.log(init_alpha)))


class EnsembleSAC(StackedLearner):
    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, seeds: Sequence[int],
                 device: torch.device | str = "cpu"):
        self._set_members(obs_dim, act_dim, config, seeds, device)
        self.actor, self.critic = make_networks(self.n, obs_dim, act_dim, config.hidden_sizes,
                                                critic_layer_norm=config.critic_layer_norm, obs_norm=config.obs_norm,
                                                log_std_min=config.log_std_min, log_std_max=config.log_std_max)
        self._init_members()
        self.alpha = LogAlpha(self.n, config.init_alpha)
        for module in (self.actor, self.critic, self.alpha):
            module.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        if config.obs_norm:  # the target normalises with the online statistics themselves
            self.critic_target.obs_norm = self.critic.obs_norm
        self.actor_opt = adam(self.actor.parameters(), config.actor_lr, config.adam_eps)
        self.critic_opt = adam(self.critic.parameters(), config.critic_lr, config.adam_eps)
        self.alpha_opt = adam(self.alpha.parameters(), config.alpha_lr, config.adam_eps)
        self.target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)
        self.updates = 0  # critic updates so far

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, fp32: bool = False) -> np.ndarray:
        """obs [N, B, S] -> the mean actions tanh(mean) [N, B, A] (evaluation and the saved expert)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        with contextlib.nullcontext() if fp32 else self.autocast():
            return self.actor(x).float().cpu().numpy()

    @torch.no_grad()
    def explore(self, obs: np.ndarray, step: int) -> np.ndarray:
        """Samples of each member's policy, its noise drawn from the member's exploration stream."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        with self.autocast():
            mean, log_std = self.actor.distribution(x)
        mean, std = mean.cpu().numpy(), np.exp(log_std.cpu().numpy())
        eps = np.stack([rng.explore.standard_normal(size=mean.shape[1:]) for rng in self.rngs]).astype(np.float32)
        return np.tanh(mean + std * eps)

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions [N, B, A] and log-probabilities [N, B] of the current policy."""
        mean, log_std = self.actor.distribution(obs)
        eps = torch.stack([torch.randn(mean.shape[1:], generator=r.target, device=self.device) for r in self.rngs])
        return EnsembleGaussianActor.squash(mean, log_std, eps)

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, np.ndarray], step: int, update_actor: bool) -> dict[str, np.ndarray]:
        """One critic step (and an actor, temperature and target step if `update_actor`) on a [N, B, ...] batch."""
        b = self._to_device(batch)
        obs, act, rew, discount, next_obs = b["obs"], b["action"], b["reward"], b["discount"], b["next_obs"]
        alpha = self.alpha.log_alpha.detach().exp().unsqueeze(-1)  # [N, 1]
        with torch.no_grad():
            with self.autocast():
                next_act, next_log_prob = self._sample(next_obs)
                target_q = self.critic_target(next_obs, next_act).float()  # [N, 2, B]
            # soft value of the bootstrap state; rew, discount: n-step (StackedReplay.sample)
            y = rew + discount * (target_q.min(dim=1).values - alpha * next_log_prob.float())
        metrics = self._critic_step(obs, act, y)
        if update_actor:
            self.critic.requires_grad_(False)  # no critic weight gradients in the actor step
            with self.autocast():
                new_act, log_prob = self._sample(obs)
                q_new = self.critic(obs, new_act).float().min(dim=1).values  # [N, B]
            log_prob = log_prob.float()
            actor_loss = (alpha * log_prob - q_new).mean(dim=-1)  # [N]
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.sum().backward()
            self.actor_opt.step()
            self.critic.requires_grad_(True)
            # temperature: raise alpha while the policy's entropy (-log_prob) is below the target, lower it above
            alpha_loss = -(self.alpha.log_alpha.unsqueeze(-1) * (log_prob.detach() + self.target_entropy)).mean(-1)
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.sum().backward()
            self.alpha_opt.step()
            self._soft_update()
            metrics["actor_loss"] = actor_loss.detach().cpu().numpy()
            metrics["alpha"] = self.alpha.log_alpha.detach().exp().cpu().numpy()
            metrics["entropy"] = -log_prob.detach().mean(-1).cpu().numpy()
        return metrics

    @torch.no_grad()
    def _soft_update(self) -> None:
        torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.cfg.tau)

    # ------------------------------------------------------------------ what checkpoints and expert.pt hold
    def _modules(self):
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target, "alpha": self.alpha}

    def _optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def _exported(self):
        return {"actor": (self.actor,), "critic": (self.critic, self.critic_target)}
