"""Contextual DeepMind Control families: reward and dynamics set by a context vector.

    from hyperzero.envs import make, get_family
    env = make("cheetah-run", context={"speed": -4, "torso_length": 0.6}, seed=0)
    # or: gymnasium.make("hyperzero/cheetah-run-v0", context={...}) after `import hyperzero.envs`
"""
from __future__ import annotations

import gymnasium

from hyperzero.envs import cheetah, finger, walker
from hyperzero.envs.context import ContextFeature, ContextSpace, context_id, parse_values
from hyperzero.envs.family import Family
from hyperzero.envs.gym_env import ContextualEnv, make, make_vector

FAMILIES: dict[str, Family] = {f.name: f for f in (cheetah.FAMILY, walker.FAMILY, finger.FAMILY)}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def gym_id(family: str) -> str:
    return f"hyperzero/{family}-v0"


for _name in FAMILIES:
    if gym_id(_name) not in gymnasium.registry:
        # No TimeLimit wrapper: dm_control already ends the episode at 1000 steps, as a truncation.
        gymnasium.register(id=gym_id(_name), entry_point="hyperzero.envs.gym_env:ContextualEnv",
                           kwargs={"family": _name}, disable_env_checker=False)

__all__ = ["FAMILIES", "ContextFeature", "ContextSpace", "ContextualEnv", "Family", "context_id", "get_family",
           "gym_id", "make", "make_vector", "parse_values"]
