"""cheetah-run with a signed target speed and a torso length.

Torso length is the torso capsule's half-length. The model keeps dm_control's
`<compiler settotalmass="14"/>`: MuJoCo rescales all masses so the total stays 14 kg, so a longer
torso takes a larger share of the mass and the legs get lighter (inertias change with it).
"""
from __future__ import annotations

import numpy as np
from dm_control.suite import cheetah

from hyperzero.envs.context import ContextFeature
from hyperzero.envs.family import Family, find, fmt, friction_feature, gravity_feature
from hyperzero.envs.rewards import directional_speed, directional_speed_array

RUN_SPEED = 10.0           # dm_control's cheetah-run target (m/s)
TORSO_HALF_LENGTH = 0.5    # dm_control's torso capsule half-length (m)
TIME_LIMIT = 10.0          # seconds at dt 0.01 -> 1000 steps


def _edit_torso_length(root, half_length: float) -> None:
    find(root, ".//geom[@name='torso']").set("fromto", fmt(-half_length, 0, 0, half_length, 0, 0))
    find(root, ".//geom[@name='head']").set("pos", fmt(half_length + 0.1, 0, 0.1))
    find(root, ".//body[@name='bthigh']").set("pos", fmt(-half_length, 0, 0))
    find(root, ".//body[@name='fthigh']").set("pos", fmt(half_length, 0, 0))


FEATURES = (
    ContextFeature("speed", "reward", "m/s", RUN_SPEED, bounds=(-10.0, 10.0), limits=(-30.0, 30.0), nonzero=True,
                   doc="signed target speed: |m| is the minimum rewarded speed, the sign the direction"),
    ContextFeature("torso_length", "dynamics", "m", TORSO_HALF_LENGTH, bounds=(0.3, 0.7), limits=(0.1, 1.5),
                   doc="torso half-length; thighs and head move with it, total mass stays 14 kg",
                   edit_xml=_edit_torso_length),
    gravity_feature(),
    friction_feature(),
)


class ContextualCheetah(cheetah.Cheetah):
    def __init__(self, speed: float, value_at_margin: float, random=None):
        self._target_speed = speed
        self._value_at_margin = value_at_margin
        super().__init__(random=random)

    def get_reward(self, physics):
        return directional_speed(physics.speed(), self._target_speed, self._value_at_margin)

    # The reward as a function of physics readings, so transitions can be relabelled for another target.
    READINGS = ("speed",)

    def reward_readings(self, physics) -> tuple[float, ...]:
        return (float(physics.speed()),)

    def reward_from_readings(self, readings: np.ndarray) -> np.ndarray:
        return directional_speed_array(readings[..., 0], self._target_speed, self._value_at_margin)


def _make_task(context, value_at_margin, random):
    return ContextualCheetah(context["speed"], value_at_margin, random=random)


FAMILY = Family(
    name="cheetah-run", features=FEATURES, read_xml=lambda: cheetah.get_model_and_assets()[0],
    physics_cls=cheetah.Physics, make_task=_make_task, time_limit=TIME_LIMIT, control_timestep=None,
    obs_dim=17, act_dim=6, doc="planar half-cheetah; reward for running at a signed target speed")
