"""SAC's builder: what the generic trainer, sweep and load_expert need from SAC."""
from __future__ import annotations

from typing import Sequence

import torch

from hyperzero.experts.solvers.base import SolverBuilder
from hyperzero.experts.solvers.sac.config import SACConfig
from hyperzero.experts.solvers.sac.learner import EnsembleSAC
from hyperzero.experts.solvers.sac.networks import make_networks

# Named SACConfig overrides, under TD3's profile names so that a preset's `experts.profile` works with either
# solver: `authors` = SACConfig's defaults (Haarnoja et al.'s SAC); `fast` = the CPU-budget choices TD3's `fast`
# profile made by measurement (128-128, LayerNorm critics, n-step 3), without its noise settings.
PROFILES: dict[str, dict] = {
    "authors": {},
    "fast": dict(hidden_sizes=(128, 128), n_step=3, critic_layer_norm=True),
}


class SACBuilder(SolverBuilder):
    name = "sac"
    config_class = SACConfig
    profiles = PROFILES
    resume_keys = SolverBuilder.resume_keys + ("log_std_min", "log_std_max")

    def make_learner(self, obs_dim: int, act_dim: int, config: SACConfig, seeds: Sequence[int],
                     device: torch.device | str = "cpu") -> EnsembleSAC:
        return EnsembleSAC(obs_dim, act_dim, config, seeds, device)

    def make_policy(self, obs_dim: int, act_dim: int, hidden: Sequence[int], config: dict):
        default = SACConfig()
        return make_networks(1, obs_dim, act_dim, hidden, critic_layer_norm=bool(config.get("critic_layer_norm", False)),
                             obs_norm=bool(config.get("obs_norm", False)),
                             log_std_min=float(config.get("log_std_min", default.log_std_min)),
                             log_std_max=float(config.get("log_std_max", default.log_std_max)))
