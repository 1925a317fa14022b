"""pendulum-g: Gymnasium's Pendulum-v1 with its gravity `g` as the context (docs/own-environment.md).

    hyperzero --plugin pendulum_family.py envs --family pendulum-g
"""
import gymnasium

from hyperzero.envs import ContextFeature, GymnasiumFamily, register_family


def make_pendulum(context, render_mode=None):
    """One task: Pendulum-v1 at gravity context["g"] (it ends every episode after 200 steps)."""
    return gymnasium.make("Pendulum-v1", g=context["g"], render_mode=render_mode)


FAMILY = GymnasiumFamily(
    name="pendulum-g",
    features=(ContextFeature("g", "dynamics", "m/s^2", default=10.0, bounds=(6.0, 14.0), limits=(0.5, 30.0),
                             doc="gravitational acceleration"),),
    factory=make_pendulum,
    episode_steps=200,
    # reward = -(angle^2 + 0.1 velocity^2 + 0.001 torque^2) per step: 0 at best, -16.27 at worst
    max_reward=0.0, min_reward=-16.2736044,
    doc="Gymnasium Pendulum-v1: swing up and balance; gravity g is the context",
)
register_family(FAMILY)
