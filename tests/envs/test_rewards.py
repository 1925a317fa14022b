import numpy as np
import pytest
from dm_control.utils import rewards

from hyperzero.envs.rewards import directional_speed


@pytest.mark.parametrize("value_at_margin", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("target", [-10.0, -4.0, -0.5, 0.5, 2.0, 10.0])
def test_matches_dm_control_tolerance(target, value_at_margin):
    speed, direction = abs(target), np.sign(target)
    for v in np.linspace(-25, 25, 1001):
        expected = rewards.tolerance(direction * v, bounds=(speed, float("inf")), margin=speed,
                                     value_at_margin=value_at_margin, sigmoid="linear")
        assert directional_speed(float(v), target, value_at_margin) == pytest.approx(float(expected), abs=1e-12)
