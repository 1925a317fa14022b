"""SAC behind the solver seam: config, networks, learner, builder (`experts.solver: sac`)."""
from hyperzero.experts.solvers.sac.builder import SACBuilder
from hyperzero.experts.solvers.sac.config import SACConfig
from hyperzero.experts.solvers.sac.learner import EnsembleSAC

__all__ = ["EnsembleSAC", "SACBuilder", "SACConfig"]
