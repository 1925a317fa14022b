"""The signed-target-speed reward shared by every family (original-code-notes §1.1)."""
from __future__ import annotations

from dm_control.utils import rewards


def directional_speed(velocity: float, target: float, value_at_margin: float) -> float:
    """tolerance(sign(m)·v, bounds=[|m|, inf), margin=|m|, linear, value_at_margin).

    |m| is a *minimum* speed: overshooting is not penalised, standing still earns
    `value_at_margin` per step, and the reward falls linearly to 0 at sign(m)·v = -|m|/9 (for 0.1).
    """
    speed = abs(target)
    direction = 1.0 if target > 0 else -1.0
    return float(rewards.tolerance(direction * velocity, bounds=(speed, float("inf")), margin=speed,
                                   value_at_margin=value_at_margin, sigmoid="linear"))
