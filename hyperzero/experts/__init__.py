"""TD3 experts: one near-optimal policy + Q-function per task, trained as stacked ensembles.

    from hyperzero.experts import TD3Config, train_experts, load_expert
    train_experts("cheetah-run", [{"speed": 2.0}, {"speed": -4.0}], "runs/x/experts", TD3Config(train_steps=100_000))
    expert = load_expert("runs/x/experts/speed=2_torso_length=0.5")
    expert.act(obs)            # [B, S] -> [B, A], deterministic
    expert.q(obs, expert.act(obs))  # [B], Q1 of the online critic
"""
from hyperzero.experts.config import FAMILY_DEFAULTS, TD3Config
from hyperzero.experts.learner import EnsembleTD3
from hyperzero.experts.policy import ExpertPolicy, load_expert
from hyperzero.experts.replay import StackedReplay
from hyperzero.experts.sweep import train_experts
from hyperzero.experts.trainer import TaskSpec, train_group

__all__ = ["FAMILY_DEFAULTS", "EnsembleTD3", "ExpertPolicy", "StackedReplay", "TD3Config", "TaskSpec", "load_expert",
           "train_experts", "train_group"]
