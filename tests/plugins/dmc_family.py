"""pendulum-target: dm_control's pendulum (suite.pendulum) with a pole length and a target angle as the context,
built like hyperzero's own families (docs/own-environment.md).

    hyperzero --plugin dmc_family.py envs --family pendulum-target
"""
import numpy as np
from dm_control.suite import pendulum
from dm_control.utils import rewards

from hyperzero.envs import ContextFeature, Family, register_family
from hyperzero.envs.family import find, fmt


def set_pole_length(root, length):
    """Dynamics feature: edit the model XML (an lxml tree) before it is compiled."""
    find(root, ".//geom[@name='pole']").set("fromto", fmt(0, 0, 0, 0, 0, length))
    find(root, ".//geom[@name='mass']").set("pos", fmt(0, 0, length))


class TargetSwingUp(pendulum.SwingUp):
    """Reward feature: hold the pole at a target angle from upright instead of upright."""

    def __init__(self, target_angle, random=None):
        self._target_angle = target_angle
        super().__init__(random=random)

    def get_reward(self, physics):
        angle = physics.named.data.qpos["hinge"][0]
        return rewards.tolerance(np.cos(angle - self._target_angle), bounds=(np.cos(np.deg2rad(30)), 1))


def make_task(context, value_at_margin, random):
    return TargetSwingUp(context["target_angle"], random=random)


FAMILY = Family(
    name="pendulum-target",
    features=(
        ContextFeature("target_angle", "reward", "rad", 0.0, bounds=(-0.6, 0.6), limits=(-np.pi, np.pi),
                       doc="angle from upright the pole should be held at"),
        ContextFeature("pole_length", "dynamics", "m", 0.5, bounds=(0.3, 0.7), limits=(0.1, 1.5),
                       doc="length of the pole (the 1 kg mass sits at its end)", edit_xml=set_pole_length),
    ),
    read_xml=lambda: pendulum.get_model_and_assets()[0],
    physics_cls=pendulum.Physics,
    make_task=make_task,
    time_limit=20.0,          # seconds; the model's timestep is 0.02 s -> 1000 steps
    control_timestep=None,    # one physics step per control step
    obs_dim=3, act_dim=1,     # orientation (2) + angular velocity (1); one torque in [-1, 1]
    doc="dm_control pendulum swing-up; hold the pole at a target angle",
)
register_family(FAMILY)
