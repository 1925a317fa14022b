"""Named expert-solver configurations (TD3Config overrides), selectable as `experts.profile` / `--profile`.

* `authors`: the HyperZero authors' TD3 exactly (lr 1e-4, 256-256, one-step targets, exploration noise
  decayed from 1.0 to 0.1 over 100k steps, 1M steps in the paper). Faithful, but slow to leave cheetah's
  standing-still floor at CPU budgets (docs/experts.md).
* `fast`: the presets' default, chosen by measurement on 2 CPU cores (docs/experts.md, benchmarks/solver_sweep.py):
  n-step 3, LayerNorm critics, lr 3e-4, 128-128, fixed noise 0.2. Shared experience (`share_experience`) is an
  option on top, not part of it: measured on 20 paired cheetah tasks it was no better on average.
"""
from __future__ import annotations

PROFILES: dict[str, dict] = {
    "authors": {},
    "fast": dict(hidden_sizes=(128, 128), actor_lr=3e-4, critic_lr=3e-4, n_step=3, critic_layer_norm=True,
                 std_start=0.2, std_end=0.2, target_noise_std=0.2),
}


def profile_config(name: str, **overrides) -> "TD3Config":
    """The TD3Config of profile `name` with `overrides` on top (the `experts:` section of a pipeline config)."""
    from hyperzero.experts.config import TD3Config

    if name not in PROFILES:
        raise ValueError(f"unknown expert profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return TD3Config.from_dict({**PROFILES[name], **overrides})
