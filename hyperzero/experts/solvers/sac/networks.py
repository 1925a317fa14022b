"""SAC's networks: a tanh-squashed Gaussian policy and the shared twin critic, both stacked over N members."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from hyperzero.experts.networks import EnsembleTwinCritic, StackedMLP, StackedObsNorm


class EnsembleGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mean(s), std(s))) for N members; forward gives the deterministic tanh(mean) [N, B, A].

    The log std is squashed smoothly into [log_std_min, log_std_max] (pytorch_sac), which keeps its gradient."""

    def __init__(self, n: int, obs_dim: int, act_dim: int, hidden: Sequence[int], obs_norm: bool = False,
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.n, self.act_dim = n, act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.obs_norm = StackedObsNorm(n, obs_dim) if obs_norm else None
        self.net = StackedMLP(n, obs_dim, hidden, 2 * act_dim)

    def reset_member(self, i: int, generator: torch.Generator) -> None:
        self.net.reset_member(i, generator)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [N, B, S] -> (mean, log_std) of the pre-tanh Gaussian, each [N, B, A] (fp32)."""
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        mean, log_std = self.net(obs).float().chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.distribution(obs)[0])

    @staticmethod
    def squash(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample a = tanh(mean + std * eps) [N, B, A] and its log-probability [N, B]."""
        u = mean + log_std.exp() * eps
        log_prob = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log |d tanh(u)/du| = log(1 - tanh(u)^2), written stably
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob


def make_networks(n: int, obs_dim: int, act_dim: int, hidden: Sequence[int], critic_layer_norm: bool = False,
                  obs_norm: bool = False, log_std_min: float = -5.0, log_std_max: float = 2.0
                  ) -> tuple[EnsembleGaussianActor, EnsembleTwinCritic]:
    """N members' (actor, twin critic), not yet initialised (reset_member draws each member's weights)."""
    return (EnsembleGaussianActor(n, obs_dim, act_dim, hidden, obs_norm=obs_norm, log_std_min=log_std_min,
                                  log_std_max=log_std_max),
            EnsembleTwinCritic(n, obs_dim, act_dim, hidden, layer_norm=critic_layer_norm, obs_norm=obs_norm))
