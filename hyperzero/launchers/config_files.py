"""Config files: the YAML dialect hyperzero reads and writes, presets, `extends:`, and `--set key=value` overrides.

Nothing here knows what a section means: `hyperzero.launchers.config` checks and types the sections.
"""
from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigLoader(yaml.SafeLoader):
    """YAML with the YAML 1.2 core schema's scalars: `-10:10:0.5` stays a string (YAML 1.1 reads it as a
    base-60 number), `1e3` is a number, and only true/false are booleans (not yes/no/on/off).

    Safe against hostile or mistaken input: aliases (`*name`) are refused, so nested aliases cannot expand a
    small file into gigabytes (a "billion laughs"), and a key given twice in one mapping is an error, not
    silently the last value."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found the alias *{event.anchor}: YAML aliases are not allowed in hyperzero configs "
                            "(a few nested ones expand into gigabytes); write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found the key {key!r} twice (first on line {first.start_mark.line + 1}); give each key once",
                        key_node.start_mark)
        return super().construct_mapping(node, deep)


class ConfigDumper(yaml.SafeDumper):
    """Quotes every string that either YAML 1.1 or 1.2 would read as something else."""


def _core_schema_resolvers() -> None:
    import re

    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    scalars = {
        "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        "tag:yaml.org,2002:int": (r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$", "-+0123456789"),
        "tag:yaml.org,2002:float": (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    }
    for tag, (pattern, first) in scalars.items():
        for cls in (ConfigLoader, ConfigDumper):
            cls.add_implicit_resolver(tag, re.compile(pattern), list(first))




_core_schema_resolvers()


def load_yaml(text: str):
    """Parse config YAML (see ConfigLoader)."""
    return yaml.load(text, Loader=ConfigLoader)


def yaml_error_text(e: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (line, column), without the quoted source."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if not problem:
        return " ".join(str(e).split())[:400]
    context = getattr(e, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{context + ': ' if context else ''}{problem}{where}"


MAX_CONFIG_BYTES = 1 << 20  # a config file larger than 1 MiB is a mistake (presets are ~1 KiB)


MAX_SET_CHARS = 100_000     # one --set value


def read_config_text(path: Path) -> str:
    """A config file's text: UTF-8 (a BOM is allowed), at most MAX_CONFIG_BYTES; every error names the file."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"config file {path} is {size} bytes; a config is at most {MAX_CONFIG_BYTES} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"config file {path}: cannot read it ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bom = " (it starts with a UTF-16 byte-order mark)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ValueError(f"config file {path}: not UTF-8 text{bom}, byte {e.start} cannot be decoded; save it as "
                         f"UTF-8") from None


PRESETS_PACKAGE = "hyperzero.launchers.presets"


SECTIONS = ("name", "description", "family", "contexts", "experts", "dataset", "fit", "evaluate")


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description. Presets named `_*` are bases that others extend, not listed."""
    out = {}
    for entry in sorted(resources.files(PRESETS_PACKAGE).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml") and not entry.name.startswith("_"):
            data = _load_extending(entry.name[:-5], ())[0]
            out[entry.name[:-5]] = str(data.get("description", "")).strip().split("\n")[0]
    return out


def plain_config(value: Any, where: str = "config") -> Any:
    """A config given in Python as plain YAML data: mappings with string keys, lists (from lists, tuples and
    numpy arrays), strings (from paths), numbers (from numpy scalars), booleans and None; anything else is a
    ValueError naming its dotted key."""
    import numbers
    import os

    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} must be a string")
            out[k] = plain_config(v, f"{where}.{k}" if where != "config" else k)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_config(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # a numpy array or scalar
        return plain_config(value.tolist(), where) if value.ndim else plain_config(value.item(), where)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "kind", None) in ("dm_control", "gymnasium") and hasattr(value, "name"):
        raise ValueError(f"{where}: give the family's name ({value.name!r}) after registering it with "
                         f"hyperzero.envs.register_family, not the family object")
    raise ValueError(f"{where}={value!r}: a config holds mappings, lists, strings, numbers, booleans and null, "
                     f"not {type(value).__name__}")


PYTHON_SOURCE = "a Python mapping (run_pipeline)"


def load_config_source(source: str | Path | Mapping) -> tuple[dict, str]:
    """A preset name, a YAML file path or a config mapping -> (raw mapping, where it came from), with its
    `extends:` chain merged in (see `extend`)."""
    return _load_extending(source, ())


def _load_extending(source: str | Path | Mapping, chain: tuple[str, ...]) -> tuple[dict, str]:
    data, where, identity, folder = _read_source(source)
    if identity in chain:
        cycle = " -> ".join([*chain[chain.index(identity):], identity])
        raise ValueError(f"{where}: `extends` makes a cycle ({cycle}); a config can only extend one that does "
                         f"not lead back to it")
    if "extends" not in data:
        return data, where
    data = dict(data)
    base = data.pop("extends")
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"{where}: extends={base!r} must name a preset or a YAML file, e.g. extends: quickstart")
    if folder is not None and base.endswith((".yaml", ".yml")) and not Path(base).is_absolute():
        base = str(folder / base)  # a file's base is found next to it, wherever the command runs
    try:
        base_data, _ = _load_extending(base, (*chain, identity))
    except ValueError as e:
        text = str(e)
        raise ValueError(text if "`extends`" in text or text.startswith(f"{where}: extends") else
                         f"{where}: extends {base}: {text}") from None
    return extend(base_data, data), where


def extend(base: Mapping, child: Mapping) -> dict:
    """`child` on top of its `extends:` base: mappings merge key by key (the base's order first), anything else
    is replaced, and so is `contexts` as a whole (a grid of other features must not be merged into the base's)."""
    merged = deep_merge(base, {k: v for k, v in child.items() if k != "contexts"})
    if "contexts" in child:
        merged["contexts"] = copy.deepcopy(child["contexts"])
    return merged


def _read_source(source: str | Path | Mapping) -> tuple[dict, str, str, Path | None]:
    """(raw mapping, where it came from, an identity for cycle checks, the folder its relative bases are in)."""
    if isinstance(source, Mapping):
        return plain_config(source), PYTHON_SOURCE, PYTHON_SOURCE, None
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise ValueError(f"the config must be a preset name, a YAML file or a mapping, got {type(source).__name__}")
    path = Path(source)
    folder = None
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ValueError(f"config file {source} does not exist; pass a preset name ({', '.join(list_presets())}) "
                             f"or an existing YAML file")
        where = str(path)  # as given: an absolute path would record the build machine in config.yaml
        identity, folder = str(path.resolve()), path.parent
        text = read_config_text(path)
    else:
        if not resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").is_file() or "/" in source:
            raise ValueError(f"unknown preset {source!r}; choose one of: {', '.join(list_presets())} (see "
                             f"`hyperzero run --list`), or pass a YAML config file")
        where = identity = f"preset:{source}"
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").read_text()
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {yaml_error_text(e)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: the config must be a YAML mapping with sections {', '.join(SECTIONS)}")
    return data, where, identity, folder


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """`["experts.train_steps=30000", "fit.seeds=[0,1]"]`: dotted key, YAML value.

    Refused: a key given twice with different values, and two different kinds of `contexts` (grid, sample,
    list) in one command: the later would silently drop the earlier. A `--set contexts.<kind>` replaces the
    config file's other kind, which is how a preset's grid is swapped for a sample."""
    from hyperzero.utils.typed import short_repr

    config = copy.deepcopy(config)
    given: dict[str, tuple[str, Any]] = {}  # dotted key -> (the --set item, its value)
    context_kind: tuple[str, str] | None = None  # (kind, the --set item that chose it)
    for item in overrides:
        shown = short_repr(item)
        if "=" not in item:
            raise ValueError(f"--set {shown} must look like key=value, e.g. --set experts.train_steps=30000")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts or parts[0] not in SECTIONS:
            raise ValueError(f"--set {shown}: unknown section {short_repr(parts[0] if parts else key)}; sections are "
                             f"{', '.join(SECTIONS)}")
        dotted = ".".join(parts)
        if len(raw) > MAX_SET_CHARS:
            raise ValueError(f"--set {dotted}=...: the value has {len(raw)} characters (at most {MAX_SET_CHARS})")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {dotted}: value is not valid YAML: {yaml_error_text(e)}") from None
        if dotted in given and given[dotted][1] != value:
            raise ValueError(f"--set {dotted} is given twice with different values ({short_repr(given[dotted][0])} "
                             f"and {shown}); give it once")
        given[dotted] = (item, value)
        if parts[0] == "contexts":
            kinds = [parts[1]] if len(parts) > 1 else (list(value) if isinstance(value, Mapping) else [])
            for kind in kinds:
                if context_kind is not None and context_kind[0] != kind:
                    raise ValueError(f"--set {short_repr(context_kind[1])} and --set {shown} conflict: contexts hold "
                                     f"exactly one of grid, sample or list (the later would drop the earlier); "
                                     f"give one kind")
                context_kind = (kind, item)
        if parts[0] == "contexts" and len(parts) > 1 and isinstance(config.get("contexts"), dict):
            # contexts holds exactly one of grid/sample/list: setting one kind replaces the preset's other kind
            config["contexts"] = {k: v for k, v in config["contexts"].items() if k == parts[1]}
        node = config
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ValueError(f"--set {shown}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return config


def override_items(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Overrides as `--set` items: a mapping {"fit.seeds": [0, 1]} becomes ["fit.seeds=[0, 1]"] (YAML values)."""
    if isinstance(overrides, Mapping):
        def dumped(value) -> str:
            return yaml.dump(plain_config(value), Dumper=ConfigDumper, default_flow_style=True, width=10**9).strip()

        return [f"{key}={dumped(value)}".removesuffix("\n...") for key, value in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def dump_yaml(config: Mapping) -> str:
    return yaml.dump(dict(config), Dumper=ConfigDumper, sort_keys=False, default_flow_style=None, width=110,
                     allow_unicode=True)
