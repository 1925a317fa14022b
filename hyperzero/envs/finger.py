"""finger-spin with a signed spin velocity and a finger length.

The reward is the authors' dense one, `directional_speed(hinge velocity, m)`, where positive m
rewards positive angular velocity (dm_control's own spin reward is the sparse 1[ω <= -15]).
Length is the distal phalanx length; fingertip, spinner position and spinner caps move with it
(valid only above 0.07 m). The touch sensors stay where dm_control puts them, as the authors did.
"""
from __future__ import annotations

import collections

import numpy as np
from dm_control.suite import finger

from hyperzero.envs.context import ContextFeature
from hyperzero.envs.family import Family, find, fmt, friction_feature
from hyperzero.envs.rewards import directional_speed, directional_speed_array

SPIN_VELOCITY = 15.0       # dm_control's spin target (rad/s)
DISTAL_LENGTH = 0.16       # dm_control's distal phalanx length (m)
TIME_LIMIT = 20.0          # seconds at control dt 0.02 -> 1000 steps
CONTROL_TIMESTEP = 0.02


def _edit_finger_length(root, length: float) -> None:
    find(root, ".//geom[@name='distal']").set("fromto", fmt(0, 0, 0, 0, 0, -length))
    find(root, ".//geom[@name='fingertip']").set("fromto", fmt(0, 0, -(length - 0.03), 0, 0, -(length + 0.001)))
    find(root, ".//body[@name='spinner']").set("pos", fmt(length + 0.04, 0, 0.4))
    for cap in ("cap1", "cap2"):
        geom = find(root, f".//geom[@name='{cap}']")
        geom.set("size", fmt(0.04, length - 0.07))


FEATURES = (
    ContextFeature("speed", "reward", "rad/s", SPIN_VELOCITY, bounds=(-15.0, 15.0), limits=(-50.0, 50.0), nonzero=True,
                   doc="signed target spin velocity of the hinge: |m| the minimum rewarded, the sign the direction"),
    ContextFeature("finger_length", "dynamics", "m", DISTAL_LENGTH, bounds=(0.10, 0.22), limits=(0.08, 0.30),
                   doc="distal phalanx length; fingertip, spinner position and caps move with it",
                   edit_xml=_edit_finger_length),
    friction_feature(),
)


def hinge_velocity(physics) -> float:
    # dm_control >= 1.0.17 returns a scalar here, older versions a length-1 array.
    return float(np.asarray(physics.hinge_velocity()).reshape(-1)[0])


def _sensor_slices(physics) -> dict[str, np.ndarray]:
    """Flat indices into sensordata of every sensor the observation reads (named indexing is slow)."""
    index = physics.named.data.sensordata._convert_key  # dm_control's own name -> index mapping
    return {name: np.arange(physics.model.nsensordata)[index(name)].reshape(-1)
            for name in ("proximal", "distal", "tip", "spinner", "proximal_velocity", "distal_velocity",
                         "hinge_velocity", "touchtop", "touchbottom")}


class ContextualSpin(finger.Spin):
    def __init__(self, speed: float, value_at_margin: float, random=None):
        self._target_speed = speed
        self._value_at_margin = value_at_margin
        self._index = None
        super().__init__(random=random)

    def get_observation(self, physics):
        # dm_control's finger observation, read with precomputed indices (same values, fewer µs).
        if self._index is None:
            i = _sensor_slices(physics)
            self._index = (np.concatenate([i["proximal"], i["distal"]]), i["tip"][[0, 2]], i["spinner"][[0, 2]],
                           np.concatenate([i["proximal_velocity"], i["distal_velocity"], i["hinge_velocity"]]),
                           np.concatenate([i["touchtop"], i["touchbottom"]]))
        joints, tip, spinner, velocity, touch = self._index
        data = physics.data.sensordata
        obs = collections.OrderedDict()
        obs["position"] = np.concatenate([data[joints], data[tip] - data[spinner]])
        obs["velocity"] = data[velocity]
        obs["touch"] = np.log1p(data[touch])
        return obs

    def get_reward(self, physics):
        return directional_speed(hinge_velocity(physics), self._target_speed, self._value_at_margin)

    # The reward as a function of physics readings, so transitions can be relabelled for another target.
    READINGS = ("hinge_velocity",)

    def reward_readings(self, physics) -> tuple[float, ...]:
        return (hinge_velocity(physics),)

    def reward_from_readings(self, readings: np.ndarray) -> np.ndarray:
        return directional_speed_array(readings[..., 0], self._target_speed, self._value_at_margin)


def _make_task(context, value_at_margin, random):
    return ContextualSpin(context["speed"], value_at_margin, random=random)


FAMILY = Family(
    name="finger-spin", features=FEATURES, read_xml=lambda: finger.get_model_and_assets()[0],
    physics_cls=finger.Physics, make_task=_make_task, time_limit=TIME_LIMIT, control_timestep=CONTROL_TIMESTEP,
    obs_dim=9, act_dim=2, doc="planar finger; reward for spinning a hinged body at a signed target velocity")
