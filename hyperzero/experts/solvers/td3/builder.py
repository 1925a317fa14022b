"""TD3's builder: what the generic trainer, sweep and load_expert need from TD3."""
from __future__ import annotations

from typing import Sequence

import torch

from hyperzero.experts.solvers.base import SolverBuilder
from hyperzero.experts.solvers.td3.config import TD3Config
from hyperzero.experts.solvers.td3.learner import EnsembleTD3
from hyperzero.experts.solvers.td3.networks import make_networks

# Named TD3Config overrides (`experts.profile`); hyperzero.experts.profiles explains them.
PROFILES: dict[str, dict] = {
    "authors": {},
    "fast": dict(hidden_sizes=(128, 128), actor_lr=3e-4, critic_lr=3e-4, n_step=3, critic_layer_norm=True,
                 std_start=0.2, std_end=0.2, target_noise_std=0.2),
}


class TD3Builder(SolverBuilder):
    name = "td3"
    config_class = TD3Config
    profiles = PROFILES

    def make_learner(self, obs_dim: int, act_dim: int, config: TD3Config, seeds: Sequence[int],
                     device: torch.device | str = "cpu") -> EnsembleTD3:
        return EnsembleTD3(obs_dim, act_dim, config, seeds, device)

    def make_policy(self, obs_dim: int, act_dim: int, hidden: Sequence[int], config: dict):
        # files written before obs_norm / critic_layer_norm existed lack them: both were off
        return make_networks(1, obs_dim, act_dim, hidden, critic_layer_norm=bool(config.get("critic_layer_norm", False)),
                             obs_norm=bool(config.get("obs_norm", False)))
