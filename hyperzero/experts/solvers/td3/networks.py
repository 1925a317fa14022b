"""TD3's networks: a deterministic tanh actor and the shared twin critic, both stacked over N members."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hyperzero.experts.networks import EnsembleTwinCritic, StackedMLP, StackedObsNorm


class EnsembleActor(nn.Module):
    """Deterministic policy a = tanh(MLP(s)) for N members: [N, B, S] -> [N, B, A].

    `obs_norm` normalises s by the member's running statistics first (`StackedObsNorm`)."""

    def __init__(self, n: int, obs_dim: int, act_dim: int, hidden: Sequence[int], obs_norm: bool = False):
        super().__init__()
        self.n = n
        self.obs_norm = StackedObsNorm(n, obs_dim) if obs_norm else None
        self.net = StackedMLP(n, obs_dim, hidden, act_dim)

    def reset_member(self, i: int, generator: torch.Generator) -> None:
        self.net.reset_member(i, generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return torch.tanh(self.net(obs).float())


def make_networks(n: int, obs_dim: int, act_dim: int, hidden: Sequence[int], critic_layer_norm: bool = False,
                  obs_norm: bool = False) -> tuple[EnsembleActor, EnsembleTwinCritic]:
    """N members' (actor, twin critic), not yet initialised (reset_member draws each member's weights)."""
    return (EnsembleActor(n, obs_dim, act_dim, hidden, obs_norm=obs_norm),
            EnsembleTwinCritic(n, obs_dim, act_dim, hidden, layer_norm=critic_layer_norm, obs_norm=obs_norm))
