"""Solver name -> builder. Imports lazily, so a solver's modules load only when it is used.

Adding a solver: a package `hyperzero/experts/solvers/<name>/` (config, networks, learner, builder; see
`hyperzero.experts.solvers.base`) and one line here. A pipeline picks one with `experts.solver`; in Python the
config's class picks it (`train_experts(..., config=SACConfig(...))`).
"""
from __future__ import annotations

import functools
import importlib

from hyperzero.experts.solvers.base import SolverBuilder, SolverConfig

# name: ("module:Builder", one-line description)
SOLVERS: dict[str, tuple[str, str]] = {
    "td3": ("hyperzero.experts.solvers.td3.builder:TD3Builder", "TD3 as the HyperZero authors trained experts"),
    "sac": ("hyperzero.experts.solvers.sac.builder:SACBuilder",
            "SAC: tanh-Gaussian policy, twin critics, automatic entropy tuning"),
}
DEFAULT_SOLVER = "td3"


@functools.lru_cache(maxsize=None)
def get_solver(name: str) -> SolverBuilder:
    if name not in SOLVERS:
        raise ValueError(f"unknown expert solver {name!r}; choose one of: {', '.join(SOLVERS)} (experts.solver)")
    module, cls = SOLVERS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)()


def solver_for(config) -> SolverBuilder:
    """The builder of a solver config (TD3Config -> td3, SACConfig -> sac)."""
    name = getattr(type(config), "solver", None)
    if name is None:
        raise TypeError(f"{type(config).__name__} is not an expert solver config; pass a TD3Config or SACConfig")
    return get_solver(name)


def solver_of(saved: dict) -> SolverBuilder:
    """The builder that wrote an expert.pt, checkpoint.pt or summary.json (no "solver" key: td3)."""
    return get_solver(saved.get("solver", DEFAULT_SOLVER))


__all__ = ["DEFAULT_SOLVER", "SOLVERS", "SolverBuilder", "SolverConfig", "get_solver", "solver_for", "solver_of"]
