"""Moved: TD3's learner is hyperzero.experts.solvers.td3.learner; the shared pieces are in solvers.base."""
from hyperzero.experts.solvers.base import MemberRNG, StackedLearner
from hyperzero.experts.solvers.td3.learner import EnsembleTD3

__all__ = ["EnsembleTD3", "MemberRNG", "StackedLearner"]
