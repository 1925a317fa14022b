"""Experts: one near-optimal policy + Q-function per task, trained as stacked ensembles by a solver
(hyperzero.experts.solvers: td3, the default, or sac, chosen by the config's class).

    from hyperzero.experts import TD3Config, train_experts, load_expert
    train_experts("cheetah-run", [{"speed": 2.0}, {"speed": -4.0}], "runs/x/experts", TD3Config(train_steps=100_000))
    expert = load_expert("runs/x/experts/speed=2_torso_length=0.5")
    expert.act(obs)            # [B, S] -> [B, A], deterministic
    expert.q(obs, expert.act(obs))  # [B], Q1 of the online critic
"""
from hyperzero.experts.chain import ChainConfig
from hyperzero.experts.config import FAMILY_DEFAULTS, TD3Config
from hyperzero.experts.learner import EnsembleTD3
from hyperzero.experts.policy import ExpertPolicy, load_expert
from hyperzero.experts.replay import StackedReplay
from hyperzero.experts.solvers import SOLVERS, get_solver
from hyperzero.experts.solvers.sac import EnsembleSAC, SACConfig
from hyperzero.experts.sweep import train_experts
from hyperzero.experts.trainer import TaskSpec, train_group

__all__ = ["ChainConfig", "FAMILY_DEFAULTS", "SOLVERS", "EnsembleSAC", "EnsembleTD3", "ExpertPolicy", "SACConfig", "StackedReplay",
           "TD3Config", "TaskSpec", "get_solver", "load_expert", "train_experts", "train_group"]
