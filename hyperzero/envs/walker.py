"""walker-walk with a signed target speed and a torso length.

Only the torso capsule's half-length changes; the hips stay at z = -0.3 in the torso frame, so
legs attach inside a longer capsule. There is no settotalmass: mass scales with the capsule volume.
"""
from __future__ import annotations

import numpy as np
from dm_control.suite import walker
from dm_control.utils import rewards

from hyperzero.envs.context import ContextFeature
from hyperzero.envs.family import Family, find, fmt, friction_feature, gravity_feature
from hyperzero.envs.rewards import directional_speed, directional_speed_array

WALK_SPEED = 1.0           # dm_control's walk speed (m/s)
STAND_HEIGHT = 1.2         # dm_control's standing torso height (m)
TORSO_HALF_LENGTH = 0.3    # dm_control's torso capsule half-length (m)
TIME_LIMIT = 25.0          # seconds at control dt 0.025 -> 1000 steps
CONTROL_TIMESTEP = 0.025


def _edit_torso_length(root, half_length: float) -> None:
    find(root, ".//geom[@name='torso']").set("size", fmt(0.07, half_length))


FEATURES = (
    ContextFeature("speed", "reward", "m/s", WALK_SPEED, bounds=(-5.0, 5.0), limits=(-15.0, 15.0), nonzero=True,
                   doc="signed target speed of the centre of mass inside the stand x move reward"),
    ContextFeature("torso_length", "dynamics", "m", TORSO_HALF_LENGTH, bounds=(0.2, 0.5), limits=(0.05, 1.0),
                   doc="torso capsule half-length; its mass and inertia scale with volume",
                   edit_xml=_edit_torso_length),
    gravity_feature(),
    friction_feature(),
)


class ContextualWalker(walker.PlanarWalker):
    def __init__(self, speed: float, value_at_margin: float, random=None):
        self._target_speed = speed
        self._value_at_margin = value_at_margin
        super().__init__(move_speed=speed, random=random)

    def get_reward(self, physics):
        stand_reward, velocity = self.reward_readings(physics)
        move_reward = directional_speed(velocity, self._target_speed, self._value_at_margin)
        return float(stand_reward * (5 * move_reward + 1) / 6)

    # The reward as a function of physics readings, so transitions can be relabelled for another target:
    # the stand term does not depend on the target speed.
    READINGS = ("stand_reward", "horizontal_velocity")

    def reward_readings(self, physics) -> tuple[float, ...]:
        standing = rewards.tolerance(physics.torso_height(), bounds=(STAND_HEIGHT, float("inf")),
                                     margin=STAND_HEIGHT / 2)
        upright = (1 + physics.torso_upright()) / 2
        return (float((3 * standing + upright) / 4), float(physics.horizontal_velocity()))

    def reward_from_readings(self, readings: np.ndarray) -> np.ndarray:
        move = directional_speed_array(readings[..., 1], self._target_speed, self._value_at_margin)
        return readings[..., 0] * (5 * move + 1) / 6


def _make_task(context, value_at_margin, random):
    return ContextualWalker(context["speed"], value_at_margin, random=random)


FAMILY = Family(
    name="walker-walk", features=FEATURES, read_xml=lambda: walker.get_model_and_assets()[0],
    physics_cls=walker.Physics, make_task=_make_task, time_limit=TIME_LIMIT, control_timestep=CONTROL_TIMESTEP,
    obs_dim=24, act_dim=6, doc="planar biped; reward for standing upright and walking at a signed target speed")
