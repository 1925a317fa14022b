"""Type checks of config dataclasses against their annotations, with messages that name key, value and form.

Two modes:
* `check_fields(obj)` (strict, for the Python API): every field must already have its declared type,
  e.g. `FitConfig(steps="10").check()` fails, naming `steps`, the value and the allowed form.
* `coerce_fields(cls, values, section)` (for YAML files and `--set`): converts a value only when the
  conversion is exact and returns the converted mapping (sequences as plain lists); e.g. `1e3` or `"1e3"` -> 1000 for an int field,
  but `1.5` or `"abc"` for an int field is an error. Booleans are never numbers and numbers are never booleans.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, Union

_NONE = type(None)


class ConfigTypeError(ValueError):
    """A config value of the wrong type. The message names the key, the value and the allowed form."""


def refuse_unknown_keys(values: typing.Iterable[str], allowed: typing.Iterable[str], noun: str = "keys",
                        where: str = "") -> None:
    """Raise ValueError naming every key of `values` not in `allowed`, and the allowed ones: an unknown key is never
    dropped silently (a misspelt one would otherwise leave its default in place)."""
    allowed = set(allowed)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}unknown {noun} {unknown}; allowed: {sorted(allowed)}")


SHOWN_CHARS = 120  # a value quoted in a message is cut to this many characters (a huge --set value stays one line)


def short_repr(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, saying how long it was (never builds more than it shows)."""
    if isinstance(value, (list, tuple, dict)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _form(tp: Any) -> str:
    """A readable description of what a type annotation allows."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer (e.g. 1000)"
    if tp is float:
        return "a finite number (e.g. 0.5 or 1e-4)"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        parts = [_form(a) for a in args if a is not _NONE]
        return " or ".join(parts) + (" or null (the default)" if _NONE in args else "")
    if origin in (tuple, list):
        inner = args[0] if args else Any
        return f"a list of {_plural(inner)} (e.g. [1, 2])" if inner in (int, float) else f"a list of {_plural(inner)}"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, _form(tp))


def _number_from_text(text: str) -> float | None:
    try:
        return float(text.strip().replace("_", ""))
    except ValueError:
        return None


def convert(key: str, value: Any, tp: Any, coerce: bool) -> Any:
    """`value` checked (and with `coerce`, exactly converted) against annotation `tp`; ConfigTypeError otherwise."""
    def fail() -> ConfigTypeError:
        return ConfigTypeError(f"{key}={short_repr(value)}: must be {_form(tp)}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if _NONE in args:
                return None
            raise fail()
        errors = []
        for option in (a for a in args if a is not _NONE):
            try:
                return convert(key, value, option, coerce)
            except ConfigTypeError as e:
                errors.append(e)
        raise fail()
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        raise fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        if coerce:
            number = _number_from_text(value) if isinstance(value, str) else value if isinstance(value, float) else None
            if isinstance(number, float) and math.isfinite(number) and number == int(number):
                return int(number)
            if isinstance(number, float) and math.isfinite(number):
                raise ConfigTypeError(f"{key}={short_repr(value)}: must be an integer, and {short_repr(value)} has a fractional part "
                                      f"(e.g. {math.floor(number)} or {math.ceil(number)})")
        raise fail()
    if tp is float:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, (int, float)):
            number = float(value)
        elif coerce and isinstance(value, str) and _number_from_text(value) is not None:
            number = _number_from_text(value)
        else:
            raise fail()
        if not math.isfinite(number):
            raise ConfigTypeError(f"{key}={short_repr(value)}: must be a finite number (not NaN or infinity)")
        return number if coerce else value
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            inner = [args[0]] * len(value)
        elif origin is tuple and args:
            if len(args) != len(value):
                raise fail()
            inner = list(args)
        else:
            inner = [args[0] if args else Any] * len(value)
        items = [convert(f"{key}[{i}]", v, t, coerce) for i, (v, t) in enumerate(zip(value, inner))]
        return items if coerce else value  # config data stays plain YAML lists; the dataclasses make tuples
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return dict(value) if coerce else value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            if not coerce:
                check_fields(value, key)
            return value
        if coerce and isinstance(value, Mapping):
            return coerce_fields(tp, value, key)
        raise fail()
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(obj: Any, prefix: str | None = None) -> None:
    """Strict check of every field of a dataclass instance against its annotation."""
    prefix = type(obj).__name__ if prefix is None else prefix
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        convert(f"{prefix}.{f.name}", getattr(obj, f.name), hints.get(f.name, Any), coerce=False)


def coerce_fields(cls: type, values: Mapping[str, Any], section: str, exclude: tuple[str, ...] = ()) -> dict:
    """`values` (a config section) with every known field exactly converted to its declared type.

    Unknown keys are left for the caller to report (it knows the section's extra keys).
    """
    if not isinstance(values, Mapping):
        raise ConfigTypeError(f"{section}={short_repr(values)}: must be a mapping of {cls.__name__} fields")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    return {k: (convert(f"{section}.{k}", v, hints.get(k, Any), coerce=True) if k in known else v)
            for k, v in values.items()}
