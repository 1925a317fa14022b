"""A contextual MDP family: a dm_control domain whose reward and dynamics are set by a context.

The shipped families (cheetah-run, walker-walk, finger-spin) are `Family` objects; a family of your own is
one too (any dm_control domain), or a `GymnasiumFamily` (any Gymnasium env built from a context), added with
`hyperzero.envs.register_family` or a plugin (docs/own-environment.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import logging

import numpy as np
from lxml import etree

from hyperzero.envs.context import ContextFeature, ContextSpace

DEFAULT_VALUE_AT_MARGIN = 0.1  # the authors' sweeps (linear sigmoid); 0 gives dm_control's cheetah-run


class _SettotalmassNotice(logging.Filter):
    """dm_control logs a deprecation notice for cheetah's `settotalmass` at every model build; we keep
    the attribute on purpose (documented in cheetah.py), so say it once, not per task."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "settotalmass" not in record.getMessage():
            return True
        first, _SettotalmassNotice.seen = not _SettotalmassNotice.seen, True
        return first


logging.getLogger("absl").addFilter(_SettotalmassNotice())


class FamilyFacts:
    """What every kind of family derives from its fields (`features`, `max_reward`, `episode_steps`)."""

    @property
    def context_space(self) -> ContextSpace:
        return ContextSpace(self.features)

    @property
    def max_return(self) -> float | None:
        """The ceiling of an episode's return: every step at the maximum reward (None: no max_reward declared)."""
        return None if self.max_reward is None else self.max_reward * self.episode_steps


@dataclass(frozen=True)
class Family(FamilyFacts):
    name: str                      # e.g. "cheetah-run"
    features: tuple[ContextFeature, ...]
    read_xml: Callable[[], str]    # the unmodified dm_control model XML
    physics_cls: type              # dm_control Physics subclass of the domain
    make_task: Callable[..., Any]  # (context, value_at_margin, random) -> dm_control Task
    time_limit: float              # seconds
    control_timestep: float | None  # None: one physics step per control step
    obs_dim: int
    act_dim: int
    episode_steps: int = 1000
    doc: str = ""
    max_reward: float | None = 1.0  # per step: every family's reward is a dm_control tolerance product in [0, 1]
    min_reward: float = 0.0        # per step: the lowest reward (the quality gate's scale is [min, max] x steps)

    kind = "dm_control"            # (a class attribute, not a field) what builds the env: hyperzero.envs.make

    def render_problem(self) -> str | None:
        """Why this family cannot render frames, or None (dm_control renders with MuJoCo, headless with EGL)."""
        return None

    def model_xml(self, context: Mapping[str, float]) -> str:
        """The MJCF for a (validated) context: geometry features edited with lxml."""
        xml = self.read_xml()
        xml = xml.decode() if isinstance(xml, bytes) else xml
        edits = [(f, context[f.name]) for f in self.features
                 if f.edit_xml is not None and context.get(f.name, f.default) != f.default]
        if not edits:
            return xml
        root = etree.fromstring(xml.encode())
        for feature, value in edits:
            feature.edit_xml(root, value)
        return etree.tostring(root, encoding="unicode")

    def make_physics(self, context: Mapping[str, float]):
        from dm_control.suite import common

        physics = self.physics_cls.from_xml_string(self.model_xml(context), common.ASSETS)
        for f in self.features:
            if f.edit_model is not None and context.get(f.name, f.default) != f.default:
                f.edit_model(physics, context[f.name])
        return physics

    def make_dmc(self, context: Mapping[str, float] | None = None, seed: int | np.random.RandomState | None = None,
                 value_at_margin: float = DEFAULT_VALUE_AT_MARGIN, allow_extrapolation: bool = False):
        """The plain dm_control `Environment` for a context (validated first: nothing is half-built)."""
        from dm_control.rl import control

        context = self.context_space.validate(context, allow_extrapolation)
        if not 0.0 <= value_at_margin < 1.0:
            raise ValueError(f"value_at_margin must be in [0, 1) for the linear reward, got {value_at_margin}")
        physics = self.make_physics(context)
        task = self.make_task(context, value_at_margin=value_at_margin, random=seed)
        kwargs = {} if self.control_timestep is None else {"control_timestep": self.control_timestep}
        return control.Environment(physics, task, time_limit=self.time_limit, **kwargs)


def find(root, xpath: str):
    """The single element at `xpath` (a missing element means the base XML changed under us)."""
    found = root.findall(xpath)
    if len(found) != 1:
        raise RuntimeError(f"expected one element at {xpath!r} in the model XML, found {len(found)}")
    return found[0]


def fmt(*values: float) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def gravity_feature(default: float = 9.81) -> ContextFeature:
    """An extra dynamics feature in a few declarative lines: gravity's magnitude."""

    def edit_model(physics, g: float) -> None:
        physics.model.opt.gravity[:] = (0.0, 0.0, -g)

    return ContextFeature("gravity", "dynamics", "m/s^2", default, bounds=(4.0, 15.0), limits=(0.0, 30.0),
                          doc="magnitude of gravity (points down)", optional=True, edit_model=edit_model)


def friction_feature() -> ContextFeature:
    """Another extra dynamics feature: a scale on every geom's sliding friction."""

    def edit_model(physics, scale: float) -> None:
        physics.model.geom_friction[:, 0] *= scale

    return ContextFeature("friction_scale", "dynamics", "x", 1.0, bounds=(0.5, 1.5), limits=(0.01, 10.0),
                          doc="multiplier on the sliding friction of every geom", optional=True,
                          edit_model=edit_model)
