"""EnsembleTD3: N independent TD3 agents with stacked weights (one baddbmm per layer for all members).

Independence (see StackedLearner): every random draw (init, exploration, replay indices, target noise) comes
from the member's own generator, so member i of an ensemble follows the trajectory a solo agent with the same
seed follows, up to float rounding (checked by tests/experts/test_ensemble.py).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import numpy as np
import torch

from hyperzero.experts.solvers.base import StackedLearner, adam
from hyperzero.experts.solvers.td3.config import TD3Config
from hyperzero.experts.solvers.td3.networks import make_networks


class EnsembleTD3(StackedLearner):
    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, seeds: Sequence[int],
                 device: torch.device | str = "cpu"):
        self._set_members(obs_dim, act_dim, config, seeds, device)
        self.actor, self.critic = make_networks(self.n, obs_dim, act_dim, config.hidden_sizes,
                                                critic_layer_norm=config.critic_layer_norm, obs_norm=config.obs_norm)
        self._init_members()
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        if config.obs_norm:  # targets normalise with the online statistics themselves, not a copy to keep in step
            self.actor_target.obs_norm, self.critic_target.obs_norm = self.actor.obs_norm, self.critic.obs_norm
        self.actor_opt = adam(self.actor.parameters(), config.actor_lr, config.adam_eps)
        self.critic_opt = adam(self.critic.parameters(), config.critic_lr, config.adam_eps)
        self.updates = 0  # critic updates so far

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, std: float | None = None, fp32: bool = False) -> np.ndarray:
        """obs [N, B, S] -> actions [N, B, A] in [-1, 1] plus member-RNG Gaussian noise when std is given
        (then unclipped: the caller decides what reaches the env and what is stored). `fp32` acts without
        autocast, as the saved expert does (evaluation must score the policy that is saved)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        with contextlib.nullcontext() if fp32 else self.autocast():
            a = self.actor(x).float().cpu().numpy()
        if std is not None and std > 0:
            noise = np.stack([rng.explore.normal(0.0, std, size=a.shape[1:]) for rng in self.rngs])
            a = a + noise.astype(np.float32)
        return a

    def explore(self, obs: np.ndarray, step: int) -> np.ndarray:
        return self.act(obs, std=self.cfg.exploration_std(step))

    def curve_row(self, step: int) -> dict[str, float]:
        return {"exploration_std": self.cfg.exploration_std(step)}

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, np.ndarray], step: int, update_actor: bool) -> dict[str, np.ndarray]:
        """One critic step (and an actor + target step if `update_actor`) on a [N, B, ...] batch."""
        cfg = self.cfg
        b = self._to_device(batch)
        obs, act, rew, discount, next_obs = b["obs"], b["action"], b["reward"], b["discount"], b["next_obs"]
        with torch.no_grad():
            std = cfg.target_std(step)
            noise = torch.stack([torch.randn(act.shape[1:], generator=r.target, device=self.device)
                                 for r in self.rngs]) * std
            noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            with self.autocast():
                next_act = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
                target_q = self.critic_target(next_obs, next_act).float()  # [N, 2, B]
            y = rew + discount * target_q.min(dim=1).values  # [N, B]; rew, discount: n-step (StackedReplay.sample)
        metrics = self._critic_step(obs, act, y)
        if update_actor:
            self.critic.requires_grad_(False)  # no critic weight gradients in the actor step
            with self.autocast():
                q1 = self.critic.q1(obs, self.actor(obs)).float()  # [N, B]
            actor_loss = -q1.mean(dim=-1)  # [N]
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.sum().backward()
            self.actor_opt.step()
            self.critic.requires_grad_(True)
            self._soft_update()
            metrics["actor_loss"] = actor_loss.detach().cpu().numpy()
        return metrics

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.cfg.tau
        for online, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)

    # ------------------------------------------------------------------ what checkpoints and expert.pt hold
    def _modules(self):
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target}

    def _optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def _exported(self):
        return {"actor": (self.actor, self.actor_target), "critic": (self.critic, self.critic_target)}
