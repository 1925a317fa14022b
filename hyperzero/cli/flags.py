"""Command-line options generated from config dataclasses, so that every command shares the config's names,
defaults and help.

Each dataclass field becomes one option named after it (`_` -> `-`, nested dataclasses as dotted options:
`--gate.max-retries`); its help is the field's doc comment in the dataclass source (the trailing `#` comment
on its line plus indented comment lines below it) and its dataclass default. An option's value is read the
way a config file reads it (YAML 1.2 core scalars: `true`/`false`, `null`, `1e3`); a list is `[a, b]` or
`a,b`. Options default to argparse.SUPPRESS: only given options appear in the parsed namespace, under the
dest `set:<section>.<dotted key>`, and override the config (`given_values`).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

DEST_PREFIX = "set:"


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its one-line doc: the trailing comment of the field's line, continued by the comment-only
    lines right below it that are indented deeper than the field or start with `#  ` (a section heading such as
    `# --- noise ---` is neither)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments: dict[int, tuple[int, str]] = {}  # line (1-based) -> (column, text after '#')
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string[1:])
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    fields = [n for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    docs = {}
    for node in fields:
        column = node.col_offset
        parts = [comments[ln][1].strip() for ln in range(node.lineno, node.end_lineno + 1) if ln in comments]
        line = node.end_lineno + 1
        while line <= len(lines) and lines[line - 1].strip().startswith("#"):
            col, text = comments.get(line, (0, ""))
            if not (col > column or (text.startswith("  ") and not text.strip().startswith("-"))):
                break
            parts.append(text.strip())
            line += 1
        docs[node.target.id] = " ".join(p for p in parts if p)
    return docs


def _origin(tp: Any) -> tuple[Any, tuple]:
    return typing.get_origin(tp), typing.get_args(tp)


def _without_none(tp: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    origin, args = _origin(tp)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True
    return tp, False


def _is_list(tp: Any) -> bool:
    origin, _ = _origin(tp)
    return origin in (list, tuple) or tp in (list, tuple)


def _is_text(tp: Any) -> bool:
    origin, args = _origin(tp)
    return tp is str or (origin is Literal and all(isinstance(a, str) for a in args))


def yaml_text(value: Any) -> str:
    """A value as one line of the config's YAML (what `--set key=<this>` reads back as `value`)."""
    import yaml

    from hyperzero.launchers.config_files import ConfigDumper

    if isinstance(value, tuple):
        value = list(value)
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    text = yaml.dump(value, Dumper=ConfigDumper, default_flow_style=True, width=10 ** 9, allow_unicode=True).strip()
    return text[:-3].strip() if text.endswith(("\n...", " ...")) else text


class FieldParser:
    """argparse `type=` for one field: reads the text as YAML (a list also as `a,b`), then checks and converts
    it exactly as a config file's value (hyperzero.utils.typed.convert)."""

    def __init__(self, key: str, tp: Any):
        self.key, self.tp = key, tp
        self.__name__ = key  # argparse names the type in some messages

    def __call__(self, text: str) -> Any:
        import yaml

        from hyperzero.launchers.config_files import load_yaml, yaml_error_text
        from hyperzero.utils.typed import ConfigTypeError, convert

        inner, optional = _without_none(self.tp)
        try:
            value = load_yaml(text)
        except yaml.YAMLError as e:
            if not _is_text(inner) and not _is_list(inner):
                raise argparse.ArgumentTypeError(f"{text!r} is not valid YAML: {yaml_error_text(e)}") from None
            value = text
        if value is None and optional:
            return None
        if _is_text(inner) and not isinstance(value, str):
            value = text  # `--device 0`-like text stays text, as the field is a string
        if _is_list(inner) and not isinstance(value, list):
            if isinstance(value, str) or value is None:
                try:
                    value = [load_yaml(item.strip()) for item in text.split(",") if item.strip()]
                except yaml.YAMLError as e:
                    raise argparse.ArgumentTypeError(f"{text!r}: {yaml_error_text(e)}") from None
            else:
                value = [value]
        try:
            return convert(self.key, value, self.tp, coerce=True)
        except ConfigTypeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


def _metavar(tp: Any, name: str) -> str:
    inner, optional = _without_none(tp)
    origin, args = _origin(inner)
    if inner is bool:
        text = "{true,false}"
    elif origin is Literal:
        text = "{" + ",".join(str(a) for a in args) + "}"
    elif inner is int:
        text = "N"
    elif inner is float:
        text = "X"
    elif _is_list(inner):
        text = "A,B"
    elif inner is dict or origin is dict:
        text = "{K: V}"
    else:
        text = name.rsplit(".", 1)[-1].upper()
    return f"{text}|null" if optional else text


@dataclasses.dataclass(frozen=True)
class Flag:
    """One generated option: `option` on the command line sets `key` (dotted, within `section`)."""

    option: str
    section: str
    key: str
    doc: str
    default: Any
    type: Any

    @property
    def dest(self) -> str:
        return f"{DEST_PREFIX}{self.section}.{self.key}"

    @property
    def help(self) -> str:
        return f"{self.doc} (default: {yaml_text(self.default)})".replace("%", "%%")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def dataclass_flags(cls: type, section: str, exclude: Sequence[str] = (), key_prefix: str = "") -> list[Flag]:
    """One Flag per field of `cls` (nested dataclasses expanded into dotted keys), in field order. A field
    without a doc comment is a ValueError: its option would have no help."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    flags = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp = hints[f.name]
        key = f"{key_prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            flags += dataclass_flags(tp, section, key_prefix=f"{key}.")
            continue
        doc = docs.get(f.name, "")
        if not doc:
            raise ValueError(f"{cls.__name__}.{f.name} has no doc comment; add `# what it does` after the field in "
                             f"{inspect.getsourcefile(cls)}: it is the option's help")
        flags.append(Flag(option="", section=section, key=key, doc=doc, default=_default(f), type=tp))
    return flags


def option_name(key: str, prefix: str = "") -> str:
    """`gate.max_retries` -> `--gate.max-retries` (with prefix `experts.`: `--experts.gate.max-retries`)."""
    return "--" + f"{prefix}{key}".replace("_", "-")


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flags: Sequence[Flag],
              prefix: str = "", aliases: dict[str, Sequence[str]] | None = None) -> list[Flag]:
    """Add one option per Flag (named `--<prefix><key>`); `aliases` maps a key to extra option strings.
    Returns the Flags with their option names."""
    added = []
    for flag in flags:
        flag = dataclasses.replace(flag, option=option_name(flag.key, prefix))
        inner, _ = _without_none(flag.type)
        extra = {"nargs": "?", "const": True} if inner is bool else {}  # a bare `--videos` means true
        parser.add_argument(flag.option, *(aliases or {}).get(flag.key, ()), dest=flag.dest,
                            type=FieldParser(f"{flag.section}.{flag.key}", flag.type), default=argparse.SUPPRESS,
                            metavar=_metavar(flag.type, flag.key), help=flag.help, **extra)
        added.append(flag)
    return added


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The generated options the user gave: dotted config key (`experts.gate.max_retries`) -> parsed value."""
    return {k[len(DEST_PREFIX):]: v for k, v in vars(args).items() if k.startswith(DEST_PREFIX)}


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Given option values as `--set` items (`experts.train_steps=30000`)."""
    return [f"{key}={yaml_text(value)}" for key, value in values.items()]


def section_flags(section: str, include: Sequence[str] = ()) -> list[Flag]:
    """The Flags of one pipeline-config section (hyperzero.launchers.config.section_classes), in field order;
    `include` brings back fields the pipeline leaves out (`evaluate`'s methods and seeds)."""
    from hyperzero.launchers.config import section_classes

    flags: list[Flag] = []
    for cls, left_out in section_classes()[section]:
        flags += dataclass_flags(cls, section, exclude=[n for n in left_out if n not in include])
    return flags


CONFIG_HELP = ("a preset name (`hyperzero run --list`) or a YAML config file: this command takes its {sections} "
               "(`--set` and the options below override them)")
SET_HELP = ("override a config value with the syntax of `hyperzero run --set`, e.g. --set {example} (repeatable; "
            "applied after --config, before the options below)")


def add_stage_options(parser: argparse.ArgumentParser, stage: str, prefix_help: str = "",
                      include: Sequence[str] = (), aliases: dict[str, Sequence[str]] | None = None) -> list[Flag]:
    """`--config`, `--set` and the generated options of the config sections a stage command reads."""
    from hyperzero.launchers.config import STAGE_SECTIONS

    sections = [s for s in STAGE_SECTIONS[stage] if s in ("experts", "dataset", "fit", "evaluate")]
    shown = ", ".join(STAGE_SECTIONS[stage])
    parser.add_argument("--config", metavar="PRESET|FILE", default=None,
                        help=CONFIG_HELP.format(sections=f"section{'s' if ',' in shown else ''} {shown}"))
    example = {"experts": "experts.gate.retry_steps=20000", "dataset": "dataset.n_episodes=5",
               "fit": "fit.model.hidden_dim=128", "evaluate": "evaluate.episodes=5"}[stage]
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=SET_HELP.format(example=example))
    added = []
    for section in sections:
        group = parser.add_argument_group(f"{section} settings (config section `{section}:`{prefix_help})")
        added += add_flags(group, section_flags(section, include), aliases=aliases)
    return added


def stage_config(args: argparse.Namespace, stage: str) -> dict:
    """{section: values} of a stage command: defaults < --config < --set < options (launchers.config.stage_section)."""
    from hyperzero.launchers.config import stage_section

    return stage_section(stage, args.config, args.overrides, given_values(args))


def option_error(error: ValueError, section: str) -> ValueError:
    """A config check's message about `<section>.<key>` prefixed with the option a stage command has for it (the
    value may have come from the option, --set or --config, so the message keeps the config key too)."""
    text = str(error)
    if text.startswith(f"{section}."):
        key, sep, _ = text[len(section) + 1:].partition("=")
        if sep and " " not in key:
            return ValueError(f"{option_name(key)}: {text}")
    return ValueError(text)
