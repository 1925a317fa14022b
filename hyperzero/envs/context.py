"""Context features and context spaces: what a task's context is, its valid values, grids and samples.

A *context* is a dict {feature name: float}. Each family declares its features once (name, unit,
nominal bounds, physical limits, default, meaning, and for dynamics features how to edit the
model); everything else (validation, grids, sampling, normalisation) comes from `ContextSpace`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ContextFeature:
    name: str
    kind: Literal["reward", "dynamics"]
    unit: str
    default: float
    bounds: tuple[float, float]  # nominal range: grids, sampling and normalisation to [-1, 1]
    limits: tuple[float, float]  # physically valid range (inclusive); beyond bounds needs allow_extrapolation
    doc: str  # one-line meaning
    nonzero: bool = False  # a signed target speed of 0 has no direction and degenerates the reward
    optional: bool = False  # extra features appear in a context (and its id) only when set
    # Dynamics features edit the model: `edit_xml(root, value)` before compiling (geometry), or
    # `edit_model(physics, value)` after compiling (gravity, friction, gears...). Skipped at the
    # default value, so the default context is exactly the unmodified dm_control model.
    edit_xml: Callable[[Any, float], None] | None = field(default=None, compare=False, repr=False)
    edit_model: Callable[[Any, float], None] | None = field(default=None, compare=False, repr=False)

    def check(self, value: Any, allow_extrapolation: bool = False) -> float:
        """Return `value` as a float or raise a ValueError that names the feature and the allowed range."""
        v = self.number(value)
        lo, hi = self.limits
        if self.nonzero and v == 0.0:
            raise ValueError(f"context feature {self.name!r}: value 0 is not allowed (the sign gives the direction, "
                             f"so 0 has none); use a value in [{lo}, 0) or (0, {hi}] {self.unit}")
        if not lo <= v <= hi:
            raise ValueError(f"context feature {self.name!r}: value {v} is outside its physical limits [{lo}, {hi}] {self.unit}")
        blo, bhi = self.bounds
        if not allow_extrapolation and not blo <= v <= bhi:
            raise ValueError(f"context feature {self.name!r}: value {v} is outside the nominal range [{blo}, {bhi}] {self.unit}; "
                             f"pass allow_extrapolation=True (CLI: --allow-extrapolation) to use it deliberately")
        return v

    def number(self, value: Any) -> float:
        """`value` as a finite float (a number or a numeric string; not a boolean), else a ValueError naming the feature."""
        if isinstance(value, (bool, np.bool_)):  # float(True) == 1.0 would silently pass
            raise ValueError(f"context feature {self.name!r}: value {value!r} is a boolean, not a number; give a "
                             f"number in [{self.limits[0]}, {self.limits[1]}] {self.unit}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"context feature {self.name!r}: value {value!r} is not a number; give a number in "
                             f"[{self.limits[0]}, {self.limits[1]}] {self.unit}") from None
        lo, hi = self.limits
        if not math.isfinite(v):
            raise ValueError(f"context feature {self.name!r}: value {v} is not finite; allowed range is [{lo}, {hi}] {self.unit}")
        return v


def _fmt(v: float) -> str:
    return f"{v:g}"


def context_id(context: Mapping[str, float]) -> str:
    """Readable, filesystem-safe task id such as `speed=-4_torso_length=0.6`. Never parsed back."""
    return "_".join(f"{k}={_fmt(float(v))}" for k, v in context.items())


MAX_GRID_VALUES = 10_000  # per feature: a typo such as step 1e-9 must not try to allocate billions of tasks


def parse_values(spec: str) -> list[float]:
    """`"1,2,3"` -> [1, 2, 3]; `"lo:hi:step"` -> lo, lo+step, ..., hi (inclusive, rounded to the step's decimals)."""
    spec = spec.strip()
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"range {spec!r} must be lo:hi:step, e.g. -10:10:0.5")
        try:
            lo, hi, step = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"range {spec!r} must be three numbers lo:hi:step, e.g. -10:10:0.5") from None
        if not all(math.isfinite(x) for x in (lo, hi, step)) or step <= 0 or hi < lo:
            raise ValueError(f"range {spec!r}: need finite numbers with step > 0 and hi >= lo, e.g. -10:10:0.5")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > MAX_GRID_VALUES:
            raise ValueError(f"range {spec!r} has {n} values (more than {MAX_GRID_VALUES}); use a larger step")
        decimals = max(0, -int(math.floor(math.log10(step))) + 3)
        return [round(lo + i * step, decimals) for i in range(n)]
    try:
        return [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"values {spec!r} must be a comma list (1,2,3) or a range lo:hi:step") from None


class ContextSpace:
    """The context features of one family, with validation, grids, sampling and normalisation."""

    def __init__(self, features: Sequence[ContextFeature]):
        self.features = {f.name: f for f in features}
        if len(self.features) != len(features):
            raise ValueError("duplicate context feature names")

    # --- introspection ---
    @property
    def names(self) -> list[str]:
        return list(self.features)

    def names_of_kind(self, kind: str) -> list[str]:
        return [n for n, f in self.features.items() if f.kind == kind]

    def defaults(self) -> dict[str, float]:
        """Default value of every feature, optional ones included."""
        return {n: f.default for n, f in self.features.items()}

    def bounds(self, names: Sequence[str] | None = None) -> np.ndarray:
        """[d, 2] array of nominal (lo, hi) for `names` (default: all features)."""
        return np.array([self.features[n].bounds for n in self._names(names)], dtype=np.float64)

    def subspace(self, names: Sequence[str]) -> "ContextSpace":
        return ContextSpace([self.features[n] for n in self._names(names)])

    def _names(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            return self.names
        unknown = [n for n in names if n not in self.features]
        if unknown:
            raise ValueError(f"unknown context feature(s) {unknown}; this family has {self.names}")
        return list(names)

    # --- validation ---
    def validate(self, context: Mapping[str, Any] | None, allow_extrapolation: bool = False) -> dict[str, float]:
        """Full context dict in declaration order: defaults filled in, every value checked.

        Optional (extra) features are included only when `context` sets them.
        """
        if context is not None and not isinstance(context, Mapping):
            raise ValueError(f"context must be a mapping {{feature: value}} such as {{{self.names[0]!r}: 2.0}}, got "
                             f"{type(context).__name__} {context!r}; this family's features are {self.names}")
        context = dict(context or {})
        unknown = sorted(set(context) - set(self.features), key=str)
        if unknown:
            raise ValueError(f"unknown context feature(s) {unknown}; this family has {self.names}")
        return {n: f.check(context.get(n, f.default), allow_extrapolation) for n, f in self.features.items()
                if not f.optional or n in context}

    # --- vectors ---
    def to_vector(self, context: Mapping[str, float], names: Sequence[str] | None = None) -> np.ndarray:
        full = {**self.defaults(), **context}
        return np.array([full[n] for n in self._names(names)], dtype=np.float32)

    def from_vector(self, vector: Sequence[float], names: Sequence[str] | None = None) -> dict[str, float]:
        names = self._names(names)
        if len(vector) != len(names):
            raise ValueError(f"context vector has {len(vector)} values but {len(names)} names {names}")
        return self.validate(dict(zip(names, map(float, vector))), allow_extrapolation=True)

    def normalize(self, vector: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """Affine map of the nominal bounds onto [-1, 1]; extrapolated values land outside it."""
        b = self.bounds(names)
        lo, hi = b[:, 0], b[:, 1]
        return (2.0 * (np.asarray(vector, dtype=np.float64) - lo) / (hi - lo) - 1.0).astype(np.float32)

    def denormalize(self, vector: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        b = self.bounds(names)
        lo, hi = b[:, 0], b[:, 1]
        return ((np.asarray(vector, dtype=np.float64) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)

    # --- task sets ---
    def grid(self, allow_extrapolation: bool = False, skip_zero: bool = True,
             **values: Iterable[float] | str) -> list[dict[str, float]]:
        """Cartesian product of per-feature values (lists or "lo:hi:step" strings); others at default.

        `skip_zero` drops a 0 of a nonzero feature (e.g. speed in -10:10:0.5) instead of failing.
        """
        names = self._names(list(values))
        axes = []
        for n in names:
            try:
                vals = parse_values(values[n]) if isinstance(values[n], str) else [
                    self.features[n].number(v) for v in values[n]]
            except TypeError:
                raise ValueError(f"grid for {n!r}: {values[n]!r} must be a list of numbers or a 'lo:hi:step' "
                                 f"string such as -10:10:0.5") from None
            except ValueError as e:
                text = str(e)
                raise ValueError(text if text.startswith("context feature") else f"grid for {n!r}: {text}") from None
            if skip_zero and self.features[n].nonzero:
                vals = [v for v in vals if v != 0.0]
            if not vals:
                raise ValueError(f"grid for {n!r} is empty")
            axes.append(vals)
        return [self.validate(dict(zip(names, combo)), allow_extrapolation) for combo in itertools.product(*axes)]

    def parse_grid(self, specs: Sequence[str], **kw) -> list[dict[str, float]]:
        """CLI form of `grid`: ["speed=-10:10:0.5", "torso_length=0.3,0.5"]."""
        values = {}
        for spec in specs:
            if "=" not in spec:
                raise ValueError(f"grid spec {spec!r} must look like name=values, e.g. speed=-10:10:0.5")
            name, vals = spec.split("=", 1)
            values[name.strip()] = vals
        return self.grid(**values, **kw)

    def sample(self, n: int, seed: int, names: Sequence[str] | None = None) -> list[dict[str, float]]:
        """`n` contexts with `names` drawn uniformly in their nominal bounds (others at default)."""
        rng = np.random.default_rng(seed)
        names = self._names(names)
        out = []
        while len(out) < n:
            ctx = {k: float(rng.uniform(*self.features[k].bounds)) for k in names}
            if any(self.features[k].nonzero and ctx[k] == 0.0 for k in names):
                continue
            out.append(self.validate(ctx))
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "kind": f.kind, "unit": f.unit, "default": f.default, "bounds": f.bounds,
                 "limits": f.limits, "doc": f.doc} for f in self.features.values()]
