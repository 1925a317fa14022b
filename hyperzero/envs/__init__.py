"""Contextual families: reward and dynamics set by a context vector.

    from hyperzero.envs import make, get_family
    env = make("cheetah-run", context={"speed": -4, "torso_length": 0.6}, seed=0)
    # or: gymnasium.make("hyperzero/cheetah-run-v0", context={...}) after `import hyperzero.envs`

Three dm_control families are shipped; add your own (a dm_control domain as a `Family`, or any Gymnasium env
as a `GymnasiumFamily`) with `register_family`, `hyperzero --plugin MODULE`, or an entry point of group
`hyperzero.families` (hyperzero.envs.registry; docs/own-environment.md).
"""
from __future__ import annotations


from hyperzero.envs import cheetah, finger, walker
from hyperzero.envs.context import (MIN_ABS_SPEED, ContextFeature, ContextSpace, ExtrapolationWarning, context_id,
                                    parse_values)
from hyperzero.envs.family import Family
from hyperzero.envs.gym_env import ContextualEnv, GymnasiumContextualEnv, make, make_vector
from hyperzero.envs.gymnasium_family import GymnasiumFamily, RenderUnavailable
from hyperzero.envs.registry import (ENTRY_POINT_GROUP, FAMILIES, PLUGINS_ENV, PluginError, family_names,
                                     family_source, get_family, has_family, install_shipped, load_plugin,
                                     load_plugins, register_family, unregister_family)
from hyperzero.envs.wrappers import ContextObservation

install_shipped((cheetah.FAMILY, walker.FAMILY, finger.FAMILY))


def validate_context(family: str, context, allow_extrapolation: bool = False,
                     names: list[str] | None = None, fixed=None, who: str = "this model") -> dict[str, float]:
    """A context given to anything of `family` (an env, a trained model, an export), checked as the envs check it.

    `context` is a mapping {feature: value}, or a vector of the values of `names` in order. Every
    value is checked as the envs check it (NaN, booleans, non-numbers, unknown features, |speed|
    below MIN_ABS_SPEED, values outside the physical limits, and outside the nominal range without
    `allow_extrapolation` are ValueErrors naming the feature).

    Without `names` (an env) omitted features take their defaults (`ContextSpace.validate`). With
    `names` (something trained or collected on those features: a model, a dataset) nothing is
    defaulted: every one of `names` must be given, and the family's other features are fixed at the
    values in `fixed` (the context it was built at; None: the family's defaults); giving one of them
    with another value is refused (`ContextSpace.validate_for`; `who` names the thing in messages).
    For an unregistered family (e.g. a synthetic test family) each of `names` must be present and a
    finite number; other keys are ignored.
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
    if has_family(family):
        space = get_family(family).context_space
        if names is None:
            return space.validate(context, allow_extrapolation)
        return space.validate_for(context, names, fixed, allow_extrapolation, who)
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


# Every family is registered in Gymnasium as hyperzero/<family>-v0 (registry._install): dm_control itself ends the
# episode at 1000 steps, as a truncation; max_episode_steps states that limit on the spec (gym.spec(id).
# max_episode_steps, read by SB3/CleanRL/Minari) and makes gym.make add a TimeLimit at the same step, which
# `gym.make(id, max_episode_steps=n)` shortens (docs/gymnasium.md).

__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "MIN_ABS_SPEED", "PLUGINS_ENV", "ContextFeature", "ContextObservation",
           "ContextSpace", "ContextualEnv", "ExtrapolationWarning", "Family", "GymnasiumContextualEnv",
           "GymnasiumFamily", "PluginError", "RenderUnavailable", "context_id", "family_names", "family_source",
           "get_family", "gym_id", "has_family", "load_plugin", "load_plugins", "make", "make_vector",
           "parse_values", "register_family", "unregister_family", "validate_context"]
