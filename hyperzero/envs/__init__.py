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


def validate_context(family: str, context, allow_extrapolation: bool = False,
                     names: list[str] | None = None) -> dict[str, float]:
    """A context given to anything of `family` (an env, a trained model, an export), checked as the envs check it.

    `context` is a mapping {feature: value}, or a vector of the values of `names` in order. For a
    registered family the result is `ContextSpace.validate` (defaults filled in; NaN, booleans,
    non-numbers, unknown features, speed 0 and values outside the nominal range without
    `allow_extrapolation` are ValueErrors naming the feature). For an unregistered family (e.g. a
    synthetic test family) each of `names` must be present and a finite number; other keys are ignored.
    """
    from collections.abc import Mapping

    import numpy as np

    if context is not None and not isinstance(context, Mapping):
        if isinstance(context, (str, bytes)) or names is None or np.ndim(context) != 1 or len(context) != len(names):
            shown = f"{{{names[0]!r}: 2.0}}" if names else "{'speed': 2.0}"
            raise ValueError(f"context must be a mapping {{feature: value}} such as {shown}"
                             f"{f' or a vector of {len(names)} values ({names})' if names else ''}, got "
                             f"{type(context).__name__} {context!r}")
        context = dict(zip(names, (v.item() if hasattr(v, "item") else v for v in context)))
    if family in FAMILIES:
        return FAMILIES[family].context_space.validate(context, allow_extrapolation)
    context = dict(context or {})
    missing = [n for n in names or [] if n not in context]
    if missing:
        raise ValueError(f"context lacks features {missing}; this model was trained on {names}")
    out = dict(context)
    for n in names or []:
        out[n] = ContextFeature(n, "reward", "", 0.0, (-np.inf, np.inf), (-np.inf, np.inf), "").number(context[n])
    return out


def gym_id(family: str) -> str:
    return f"hyperzero/{family}-v0"


for _name in FAMILIES:
    if gym_id(_name) not in gymnasium.registry:
        # No TimeLimit wrapper: dm_control already ends the episode at 1000 steps, as a truncation.
        gymnasium.register(id=gym_id(_name), entry_point="hyperzero.envs.gym_env:ContextualEnv",
                           kwargs={"family": _name}, disable_env_checker=False)

__all__ = ["FAMILIES", "ContextFeature", "ContextSpace", "ContextualEnv", "Family", "context_id", "get_family",
           "gym_id", "make", "make_vector", "parse_values", "validate_context"]
