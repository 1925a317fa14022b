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

# The smallest |value| of a signed target speed (a `nonzero` feature), in the feature's unit (m/s for
# cheetah and walker, rad/s for finger). The reward's linear margin is |speed| itself, so the reward
# falls from `value_at_margin` at rest to 0 at -|speed|/9: below a few cm/s that is a step at standing
# still (no gradient to learn from), and at subnormal speeds such as 5e-324 the division by |speed| in
# hyperzero.envs.rewards overflows. 0.05 keeps the reward a ramp at least ~0.056 wide everywhere.
MIN_ABS_SPEED = 0.05


class ExtrapolationWarning(UserWarning):
    """A trained model was asked for a context outside the range of the tasks it was trained on."""


@dataclass(frozen=True)
class ContextFeature:
    name: str
    kind: Literal["reward", "dynamics"]
    unit: str
    default: float
    bounds: tuple[float, float]  # nominal range: grids, sampling and normalisation to [-1, 1]
    limits: tuple[float, float]  # physically valid range (inclusive); beyond bounds needs allow_extrapolation
    doc: str  # one-line meaning
    nonzero: bool = False  # a signed target speed: 0 has no direction, |v| < min_abs degenerates the reward
    min_abs: float | None = None  # smallest allowed |value| of a nonzero feature (None: MIN_ABS_SPEED)
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
        if self.nonzero and abs(v) < self.minimum:
            m = self.minimum
            allowed = f"use a value in [{lo}, -{m:g}] or [{m:g}, {hi}] {self.unit}"
            if v == 0.0:
                raise ValueError(f"context feature {self.name!r}: value 0 is not allowed (the sign gives the "
                                 f"direction, so 0 has none); {allowed}")
            raise ValueError(f"context feature {self.name!r}: |value| {abs(v):g} is below the minimum {m:g} "
                             f"{self.unit} (the reward's margin is |{self.name}| itself, so a smaller value makes "
                             f"it a step, or overflows it); {allowed}")
        if not lo <= v <= hi:
            raise ValueError(f"context feature {self.name!r}: value {v} is outside its physical limits [{lo}, {hi}] {self.unit}")
        blo, bhi = self.bounds
        if not allow_extrapolation and not blo <= v <= bhi:
            raise ValueError(f"context feature {self.name!r}: value {v} is outside the nominal range [{blo}, {bhi}] {self.unit}; "
                             f"pass allow_extrapolation=True (CLI: --allow-extrapolation) to use it deliberately")
        return v

    @property
    def minimum(self) -> float:
        """Smallest allowed |value| (nonzero features only; 0 for the others)."""
        if not self.nonzero:
            return 0.0
        return MIN_ABS_SPEED if self.min_abs is None else float(self.min_abs)

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
        context = self._mapping(context)
        self._refuse_unknown(context)
        return {n: f.check(context.get(n, f.default), allow_extrapolation) for n, f in self.features.items()
                if not f.optional or n in context}

    def _mapping(self, context: Any) -> dict:
        if context is not None and not isinstance(context, Mapping):
            raise ValueError(f"context must be a mapping {{feature: value}} such as {{{self.names[0]!r}: 2.0}}, got "
                             f"{type(context).__name__} {context!r}; this family's features are {self.names}")
        return dict(context or {})

    def _refuse_unknown(self, context: Mapping, suffix: str = "") -> None:
        unknown = sorted(set(context) - set(self.features), key=str)
        if unknown:
            raise ValueError(f"unknown context feature(s) {unknown}; this family has {self.names}{suffix}")

    def validate_for(self, context: Mapping[str, Any] | None, names: Sequence[str],
                     fixed: Mapping[str, Any] | None = None, allow_extrapolation: bool = False,
                     who: str = "this model") -> dict[str, float]:
        """A context given to something built on the features `names` (a trained model, a dataset, a run).

        Unlike `validate`, nothing the user omits is silently defaulted: every feature of `names` must
        be given. The other features are fixed at the values `fixed` has (the context the model or
        dataset was built at; None: the family's defaults, optional features unset). Each is returned
        at that value; giving one with another value is refused, since `who` cannot act on it.
        Raises ValueError naming the feature and the fix; `allow_extrapolation` applies to `names`.
        """
        names = self._names(names)
        context = self._mapping(context)
        self._refuse_unknown(context, f"; {who} varies {names}")
        missing = [n for n in names if n not in context]
        if missing:
            example = ", ".join(f"{n!r}: {self.features[n].default:g}" for n in names)
            raise ValueError(f"context lacks features {missing}: {who} varies {names}; give a value for every varied "
                             f"feature, e.g. {{{example}}} (an omitted feature is not filled with a default)")
        checked = {n: self.features[n].check(context[n], allow_extrapolation) for n in names}
        fixed = {k: v for k, v in self._mapping(fixed).items() if k not in names}
        base = {n: float(v) for n, v in self.validate(fixed, allow_extrapolation=True).items() if n not in names}
        for n in context:
            if n in names:
                continue
            f = self.features[n]
            v = f.check(context[n], allow_extrapolation=True)
            b = base.get(n, f.default)
            if not math.isclose(v, b, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(
                    f"context feature {n!r} = {v:g} is not varied by {who}: it varies only {names} and has {n} fixed "
                    f"at {b:g} {f.unit}, so it cannot act on another value; leave {n!r} out (it is then {b:g}), or "
                    f"use a model/dataset whose context_names include {n!r}")
        return {n: (checked[n] if n in names else base[n]) for n in self.features if n in names or n in base}

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

        `skip_zero` drops a 0 of a nonzero feature (e.g. speed in -10:10:0.5) instead of failing; other
        values with |v| below the feature's minimum (MIN_ABS_SPEED) are refused.
        """
        names = self._names(list(values))
        axes = []
        for n in names:
            given = values[n]
            try:
                vals = parse_values(given) if isinstance(given, str) else [self.features[n].number(v) for v in given]
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
        values: dict[str, str] = {}
        for spec in specs:
            if "=" not in spec:
                raise ValueError(f"grid spec {spec!r} must look like name=values, e.g. speed=-10:10:0.5")
            name, vals = spec.split("=", 1)
            values[name.strip()] = vals
        return self.grid(**values, **kw)  # type: ignore[arg-type]  # grid's keywords are feature names

    def sample(self, n: int, seed: int, names: Sequence[str] | None = None) -> list[dict[str, float]]:
        """`n` contexts with `names` drawn uniformly in their nominal bounds (others at default)."""
        rng = np.random.default_rng(seed)
        names = self._names(names)
        out: list[dict[str, float]] = []
        while len(out) < n:
            ctx = {k: float(rng.uniform(*self.features[k].bounds)) for k in names}
            if any(abs(ctx[k]) < self.features[k].minimum for k in names):
                continue
            out.append(self.validate(ctx))
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "kind": f.kind, "unit": f.unit, "default": f.default, "bounds": f.bounds,
                 "limits": f.limits, "doc": f.doc, **({"min_abs": f.minimum} if f.nonzero else {})}
                for f in self.features.values()]
