"""Named expert-solver configurations (config overrides), selectable as `experts.profile` / `--profile`.

TD3's:

* `authors`: the HyperZero authors' TD3 exactly (lr 1e-4, 256-256, one-step targets, exploration noise
  decayed from 1.0 to 0.1 over 100k steps, 1M steps in the paper). Faithful, but slow to leave cheetah's
  standing-still floor at CPU budgets (docs/experts.md).
* `fast`: the presets' default, chosen by measurement on 2 CPU cores (docs/experts.md, benchmarks/solver_sweep.py):
  n-step 3, LayerNorm critics, lr 3e-4, 128-128, fixed noise 0.2. Shared experience (`share_experience`) is an
  option on top, not part of it: measured on 20 paired cheetah tasks it was no better on average.
"""
from __future__ import annotations

from hyperzero.experts.solvers.td3.builder import (
    PROFILES,  # TD3's profiles (each solver names its own)
)


def profile_config(name: str, solver: str = "td3", **overrides):
    """The config of `solver`'s profile `name` with `overrides` on top (the `experts:` section of a pipeline
    config): a TD3Config for td3, a SACConfig for sac."""
    from hyperzero.experts.solvers import get_solver

    builder = get_solver(solver)
    if name not in builder.profiles:
        raise ValueError(f"unknown expert profile {name!r}; choose one of: {', '.join(builder.profiles)} (the "
                         f"profiles of solver {solver})")
    return builder.config_class.from_dict({**builder.profiles[name], **overrides})

__all__ = ["PROFILES", "profile_config"]
