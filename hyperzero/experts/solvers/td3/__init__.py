"""TD3 (the HyperZero authors' expert agent) behind the solver seam: config, networks, learner, builder."""
from hyperzero.experts.solvers.td3.builder import TD3Builder
from hyperzero.experts.solvers.td3.config import TD3Config
from hyperzero.experts.solvers.td3.learner import EnsembleTD3

__all__ = ["EnsembleTD3", "TD3Builder", "TD3Config"]
