"""The signed-target-speed reward shared by every family."""
from __future__ import annotations

import numpy as np


def directional_speed(velocity: float, target: float, value_at_margin: float) -> float:
    """tolerance(sign(m)·v, bounds=[|m|, inf), margin=|m|, sigmoid='linear', value_at_margin).

    |m| is a *minimum* speed: overshooting is not penalised, standing still earns
    `value_at_margin` per step, and the reward falls linearly to 0 at sign(m)·v = -|m|/9 (for 0.1).
    Scalar closed form of dm_control's `rewards.tolerance` for this case (5x faster per step);
    `tests/envs/test_rewards.py` checks it against dm_control's own function.
    """
    speed = abs(target)
    x = velocity if target > 0 else -velocity
    if x >= speed:
        return 1.0
    scaled = (speed - x) / speed * (1.0 - value_at_margin)
    return 1.0 - scaled if abs(scaled) < 1.0 else 0.0


def directional_speed_array(velocity: np.ndarray, target: float, value_at_margin: float) -> np.ndarray:
    """`directional_speed` over an array of velocities (relabelling stored transitions with another target)."""
    speed = abs(target)
    x = np.asarray(velocity, np.float64) * (1.0 if target > 0 else -1.0)
    scaled = (speed - x) / speed * (1.0 - value_at_margin)
    return np.where(x >= speed, 1.0, np.where(np.abs(scaled) < 1.0, 1.0 - scaled, 0.0))
