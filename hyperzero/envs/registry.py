"""The registry of contextual families: the shipped three and your own (docs/own-environment.md).

A family is found by name through `get_family(name)`, which looks, in order, in

1. the families registered in this process (`register_family(family)`, the shipped ones first);
2. the plugin modules listed in the environment variable HYPERZERO_PLUGINS (os.pathsep-separated module
   names or .py paths), imported once per process: `hyperzero --plugin MODULE` sets it, so that the worker
   processes the pipeline spawns (experts, fits, evaluation) load the same plugins;
3. the Python entry points of group `hyperzero.families` whose name is the family's name (an installed package
   declares `[project.entry-points."hyperzero.families"] my-family = "my_pkg.families:FAMILY"`), loaded only
   when that name is looked up. The object may be a family, a module that registers it when imported, or a
   callable that registers it or returns it.

Every mistake in a plugin is a `PluginError` (a ValueError) naming the module or entry point and what is
missing, and a plugin that fails leaves the registry as it was (nothing half-registered).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

PLUGINS_ENV = "HYPERZERO_PLUGINS"
ENTRY_POINT_GROUP = "hyperzero.families"
BUILTIN_FAMILIES = ("cheetah-run", "walker-walk", "finger-spin")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOW_TO_ADD = ("add your own with `hyperzero --plugin MODULE ...` or hyperzero.envs.register_family "
              "(docs/own-environment.md)")

# Required attributes of each kind of family (an object of another class with these is converted).
DMC_REQUIRED = ("name", "features", "read_xml", "physics_cls", "make_task", "time_limit", "control_timestep",
                "obs_dim", "act_dim")
DMC_OPTIONAL = ("episode_steps", "doc", "max_reward", "min_reward")
GYM_REQUIRED = ("name", "features", "factory", "episode_steps")
GYM_OPTIONAL = ("obs_dim", "act_dim", "doc", "max_reward", "min_reward")

FAMILIES: dict[str, Any] = {}   # name -> family; read it, but add families with register_family
_SOURCES: dict[str, str] = {}   # name -> the module (or entry point) that registered it
_LOCK = threading.RLock()
_FILE_PLUGINS: dict[str, Any] = {}  # resolved .py path -> its module
_ENV_LOADED: set[str] = set()       # HYPERZERO_PLUGINS entries already loaded in this process
_FILE_MODULE_NAMES: set[str] = set()  # module names of .py plugins (not importable by name elsewhere)


class PluginError(ValueError):
    """A plugin or a family given to register_family is unusable; the message names it and what is missing."""


# ------------------------------------------------------------------------------------------------ registration
def _describe(source: str | None) -> str:
    return f" (from {source})" if source else ""


def _coerce_family(family: Any, source: str | None):
    """`family` as a Family or GymnasiumFamily, checked; a PluginError names what is missing or wrong."""
    from hyperzero.envs.family import Family
    from hyperzero.envs.gymnasium_family import GymnasiumFamily

    where = _describe(source)
    if isinstance(family, (Family, GymnasiumFamily)):
        fam = family
        required = GYM_REQUIRED if isinstance(fam, GymnasiumFamily) else DMC_REQUIRED
        unset = [a for a in required if getattr(fam, a, None) is None and a != "control_timestep"]
        if unset:
            raise PluginError(f"family {getattr(fam, 'name', '?')!r}{where} has no value for required attribute(s) "
                              f"{unset}")
    else:
        if isinstance(family, type) or family is None or isinstance(family, (str, bytes, int, float)):
            raise PluginError(f"register_family{where}: expected a family object (hyperzero.envs.Family for a "
                              f"dm_control domain, GymnasiumFamily for a Gymnasium env), got "
                              f"{type(family).__name__} {family!r}")
        if not hasattr(family, "name") and not hasattr(family, "features"):
            raise PluginError(f"expected a family object{where} (hyperzero.envs.Family for a dm_control domain, "
                              f"GymnasiumFamily for a Gymnasium env), got {type(family).__name__} {family!r}")
        name = getattr(family, "name", "?")
        gym_like = hasattr(family, "factory")
        required, optional = (GYM_REQUIRED, GYM_OPTIONAL) if gym_like else (DMC_REQUIRED, DMC_OPTIONAL)
        missing = [a for a in required if not hasattr(family, a)]
        if missing:
            kind = "Gymnasium family (GymnasiumFamily)" if gym_like else "dm_control family (Family)"
            raise PluginError(f"family {name!r}{where} is missing required attribute(s) {missing} of a {kind}; "
                              f"a dm_control family needs {list(DMC_REQUIRED)}, a Gymnasium family "
                              f"{list(GYM_REQUIRED)} (docs/own-environment.md)")
        values = {a: getattr(family, a) for a in required + optional if hasattr(family, a)}
        try:
            fam = GymnasiumFamily(**values) if gym_like else Family(**values)
        except TypeError as e:
            raise PluginError(f"family {name!r}{where}: {e}") from None
    return _check_family(fam, where)


def _check_family(fam, where: str):  # noqa: C901 - one check after another
    from hyperzero.envs.context import ContextFeature, ContextSpace

    name = fam.name
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(f"family name {name!r}{where} must be a string of letters, digits, '-', '_' and '.', "
                          f"starting with a letter or digit (it names hyperzero/<name>-v0 and run folders)")
    features = fam.features
    if not features or not all(isinstance(f, ContextFeature) for f in features):
        raise PluginError(f"family {name!r}{where}: features must be a non-empty sequence of "
                          f"hyperzero.envs.ContextFeature (or a ContextSpace), got {features!r}")
    try:
        ContextSpace(features).validate(None)
    except ValueError as e:
        raise PluginError(f"family {name!r}{where}: its context features are invalid ({e})") from None
    for attr in ("episode_steps", "obs_dim", "act_dim"):
        value = getattr(fam, attr, None)
        if value is None and fam.kind == "gymnasium" and attr != "episode_steps":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PluginError(f"family {name!r}{where}: {attr} must be a positive integer, got {value!r}")
    for attr in ("max_reward", "min_reward"):
        value = getattr(fam, attr, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PluginError(f"family {name!r}{where}: {attr} must be a number or None, got {value!r}")
    if fam.max_reward is not None and fam.min_reward is not None and not fam.min_reward < fam.max_reward:
        raise PluginError(f"family {name!r}{where}: min_reward {fam.min_reward} must be below max_reward "
                          f"{fam.max_reward}")
    if fam.kind == "gymnasium":
        if not callable(fam.factory):
            raise PluginError(f"family {name!r}{where}: factory must be a callable context -> gymnasium.Env, got "
                              f"{fam.factory!r}")
        try:
            return fam.probe()
        except (ValueError, RuntimeError) as e:  # the probe's messages start with "family '<name>':"
            text = str(e)
            head = f"family {name!r}"
            raise PluginError(f"{head}{where}{text[len(head):]}" if text.startswith(head) else
                              f"family {name!r}{where}: {text}") from e
    for attr in ("read_xml", "make_task"):
        if not callable(getattr(fam, attr)):
            raise PluginError(f"family {name!r}{where}: {attr} must be callable, got {getattr(fam, attr)!r}")
    if not isinstance(fam.physics_cls, type):
        raise PluginError(f"family {name!r}{where}: physics_cls must be a dm_control Physics class, got "
                          f"{fam.physics_cls!r}")
    _probe_dmc(fam, where)
    return fam


def _probe_dmc(fam, where: str) -> None:
    """Build the dm_control env at the default context: its observation size, action size and range must be
    the family's (actions in [-1, 1]), and its episode must last episode_steps steps."""
    import numpy as np

    try:
        env = fam.make_dmc(None, seed=0)
        timestep = env.reset()
        spec = env.action_spec()
        steps = env._step_limit if hasattr(env, "_step_limit") else None
    except Exception as e:  # noqa: BLE001 - whatever the domain raises, name the family and the cause
        raise PluginError(f"family {fam.name!r}{where}: building its dm_control env at the default context failed: "
                          f"{type(e).__name__}: {e}") from e
    obs_dim = sum(int(np.prod(np.shape(v))) or 1 for v in timestep.observation.values())
    if obs_dim != fam.obs_dim:
        raise PluginError(f"family {fam.name!r}{where}: obs_dim={fam.obs_dim} but the env's observation has "
                          f"{obs_dim} values ({', '.join(timestep.observation)})")
    if spec.shape != (fam.act_dim,):
        raise PluginError(f"family {fam.name!r}{where}: act_dim={fam.act_dim} but the env's action has shape "
                          f"{spec.shape}")
    if not (np.allclose(spec.minimum, -1.0) and np.allclose(spec.maximum, 1.0)):
        raise PluginError(f"family {fam.name!r}{where}: the action range is [{spec.minimum}, {spec.maximum}]; "
                          f"hyperzero's actions are in [-1, 1] (give the model's actuators ctrlrange=\"-1 1\")")
    dt = env.control_timestep()
    if hasattr(env, "close"):
        env.close()
    if steps is not None and np.isfinite(steps) and int(round(steps)) != fam.episode_steps:
        raise PluginError(f"family {fam.name!r}{where}: episode_steps={fam.episode_steps} but time_limit "
                          f"{fam.time_limit} s at {dt:g} s per step gives {int(round(steps))} steps")


def _caller_module(depth: int = 2) -> str | None:
    try:
        return sys._getframe(depth).f_globals.get("__name__")
    except ValueError:
        return None


SHIPPED = "hyperzero (shipped)"


def register_family(family: Any, *, replace: bool = False) -> Any:
    """Add a family to the registry (and `hyperzero/<name>-v0` to Gymnasium's) and return it.

    `family` is a `hyperzero.envs.Family` (a dm_control domain with context features, built like the shipped
    families), a `GymnasiumFamily` (any Gymnasium env from a factory `context -> env`), or any object with the
    attributes of one of them. It is checked first: its env is built once at the default context (spaces,
    action range, episode length); a GymnasiumFamily's obs_dim / act_dim are then filled from its env.
    Registering a name that exists (a shipped family, or another module's family of that name) needs
    `replace=True`; the module that registered a family may register it again (a re-import) and replaces it.
    Nothing is registered when the family is refused (a PluginError says why).

    Called at the top level of an importable module, that module is also imported by the worker processes the
    pipeline starts (through HYPERZERO_PLUGINS), so they know the family too (a script's top level is rerun by
    them anyway).
    """
    caller = _caller_module()
    source = f"module {caller}" if caller else None
    fam = _coerce_family(family, source)
    with _LOCK:
        if fam.name in FAMILIES and not replace and _SOURCES.get(fam.name) != source:
            owner = ("a shipped family" if _SOURCES.get(fam.name) == SHIPPED
                     else f"the family registered{_describe(_SOURCES.get(fam.name))}")
            raise PluginError(f"family name {fam.name!r}{_describe(source)} clashes with {owner}; choose another "
                              f"name, or pass replace=True to register_family to replace it")
        _install(fam, source)
    if caller and caller not in ("__main__", "__mp_main__") and not caller.startswith("hyperzero.") \
            and caller not in _FILE_MODULE_NAMES:
        _remember_plugin(caller)
    return fam


def _install(fam, source: str | None) -> None:
    import gymnasium

    gid = f"hyperzero/{fam.name}-v0"
    if gid in gymnasium.registry:
        del gymnasium.registry[gid]
    entry = ("hyperzero.envs.gym_env:ContextualEnv" if fam.kind == "dm_control"
             else "hyperzero.envs.gym_env:make")
    # the time limit is a truncation; max_episode_steps states it on the spec and makes gym.make add a TimeLimit
    gymnasium.register(id=gid, entry_point=entry, kwargs={"family": fam.name}, disable_env_checker=False,
                       max_episode_steps=fam.episode_steps)
    FAMILIES[fam.name] = fam
    if source is None:
        _SOURCES.pop(fam.name, None)
    else:
        _SOURCES[fam.name] = source


def install_shipped(families) -> None:
    """Register the shipped families (no checks: they are tested with the package)."""
    with _LOCK:
        for fam in families:
            _install(fam, SHIPPED)


def unregister_family(name: str) -> None:
    """Remove a family (and its hyperzero/<name>-v0 Gymnasium id); unknown names are ignored."""
    import gymnasium

    with _LOCK:
        FAMILIES.pop(name, None)
        _SOURCES.pop(name, None)
        gid = f"hyperzero/{name}-v0"
        if gid in gymnasium.registry:
            del gymnasium.registry[gid]


def _snapshot() -> tuple[dict, dict]:
    return dict(FAMILIES), dict(_SOURCES)


def _restore(snapshot: tuple[dict, dict]) -> None:
    families, sources = snapshot
    with _LOCK:
        for name in list(FAMILIES):
            if name not in families:
                unregister_family(name)
        for name, fam in families.items():
            if FAMILIES.get(name) is not fam:
                _install(fam, sources.get(name))
        _SOURCES.clear()
        _SOURCES.update(sources)


# ------------------------------------------------------------------------------------------------ plugins
def _remember_plugin(spec: str) -> None:
    """Add a plugin to HYPERZERO_PLUGINS, so that worker processes started from here load it too."""
    entries = [e for e in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if e]
    if spec not in entries:
        os.environ[PLUGINS_ENV] = os.pathsep.join(entries + [spec])
    _ENV_LOADED.add(spec)


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _import_file(path: Path):
    resolved = str(path.resolve())
    if resolved in _FILE_PLUGINS:
        return _FILE_PLUGINS[resolved], False
    for module in list(sys.modules.values()):  # the same file imported by its module name already
        file = getattr(module, "__file__", None)
        if file and file.endswith(".py") and os.path.realpath(file) == resolved:
            return module, False
    stem = re.sub(r"\W", "_", path.stem)
    name = stem if stem not in sys.modules else f"hyperzero_plugin_{stem}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _FILE_MODULE_NAMES.add(name)
    _FILE_PLUGINS[resolved] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        _forget_file(resolved)
        raise
    return module, True


def _forget_file(resolved: str) -> None:
    module = _FILE_PLUGINS.pop(resolved, None)
    if module is not None:
        sys.modules.pop(module.__name__, None)
        _FILE_MODULE_NAMES.discard(module.__name__)


def load_plugin(spec: str) -> list[str]:
    """Import a plugin, a module name (importable from sys.path or the current directory) or a path to a .py
    file, which registers one or more families with `register_family` when imported. Returns their names.

    Raises PluginError naming the plugin: it cannot be imported, its import fails, it registers no family, or
    a family it registers is refused (a missing attribute, a name clash without replace=True). On any error the
    registry is left as it was. The plugin is also added to HYPERZERO_PLUGINS for worker processes."""
    spec = str(spec).strip()
    if not spec:
        raise PluginError("--plugin needs a module name (e.g. my_families) or a path to a .py file")
    snapshot = _snapshot()
    before = set(FAMILIES)
    fresh_module, fresh_file = None, None
    try:
        if _is_path(spec):
            path = Path(spec)
            if not path.is_file():
                raise PluginError(f"plugin {spec}: no such file; give a path to a .py file or an importable module "
                                  f"name")
            module, fresh = _import_file(path)
            record = str(path.resolve())
            fresh_file = record if fresh else None
        else:
            fresh = spec not in sys.modules
            try:
                module = _import_module(spec)
            except ModuleNotFoundError as e:
                if e.name and (spec == e.name or spec.startswith(e.name + ".")):
                    raise PluginError(f"plugin module {spec!r} cannot be imported ({e}); give a module importable "
                                      f"from the current directory or sys.path (e.g. install its package), or a "
                                      f"path to a .py file") from None
                raise
            fresh_module = spec if fresh else None
            record = spec
        registered = sorted((set(FAMILIES) - before)
                            | {n for n, src in _SOURCES.items() if src == f"module {module.__name__}"})
        if not registered:
            raise PluginError(f"plugin {spec!r} registered no family: when imported it must call "
                              f"hyperzero.envs.register_family(FAMILY) with a Family (dm_control) or "
                              f"GymnasiumFamily (docs/own-environment.md)")
    except Exception as e:  # noqa: BLE001 - the plugin's own error too, with the plugin named
        _restore(snapshot)
        if fresh_module:
            sys.modules.pop(fresh_module, None)
        if fresh_file:
            _forget_file(fresh_file)
        text = str(e)
        if isinstance(e, PluginError):
            raise PluginError(text if spec in text else f"plugin {spec!r}: {text}") from None
        raise PluginError(f"plugin {spec!r}: importing it failed: {type(e).__name__}: {e}") from e
    _remember_plugin(record)
    return registered


def _import_module(name: str):
    """importlib.import_module, with the current directory on sys.path as `python -m` has it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = name.split(".")[0]
        cwd = os.getcwd()
        if e.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def load_plugins(specs: Iterable[str]) -> list[str]:
    """`load_plugin` for each spec in order; returns every registered family name."""
    names: list[str] = []
    for spec in specs:
        names += load_plugin(spec)
    return names


def _load_env_plugins() -> None:
    """Load the plugins HYPERZERO_PLUGINS lists (once each per process)."""
    raw = os.environ.get(PLUGINS_ENV, "")
    for spec in [e for e in raw.split(os.pathsep) if e]:
        if spec in _ENV_LOADED:
            continue
        _ENV_LOADED.add(spec)
        if not _is_path(spec) and spec in sys.modules:
            continue  # imported already (it registered then)
        try:
            load_plugin(spec)
        except PluginError as e:
            raise PluginError(f"{e} (listed in the environment variable {PLUGINS_ENV})") from None


_EP_CACHE: list = []  # [(sys.path when scanned, the entry points)]


def _entry_points():
    """The entry points of group hyperzero.families (scanned again when sys.path changes)."""
    from importlib.metadata import entry_points

    key = tuple(sys.path)
    if not _EP_CACHE or _EP_CACHE[0][0] != key:
        _EP_CACHE[:] = [(key, list(entry_points(group=ENTRY_POINT_GROUP)))]
    return _EP_CACHE[0][1]


def _load_entry_point(ep) -> None:
    """Load one entry point of group hyperzero.families; its name must then be a registered family."""
    from types import ModuleType

    dist = getattr(getattr(ep, "dist", None), "name", None)
    where = f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}{f', package {dist}' if dist else ''})"
    snapshot = _snapshot()
    try:
        obj = ep.load()
        if not isinstance(obj, ModuleType):  # a module registered its families when imported
            if callable(obj) and not hasattr(obj, "features"):
                obj = obj()  # a function that registers the family, or returns it
            if obj is not None and not any(f is obj for f in FAMILIES.values()) and \
                    not (getattr(obj, "name", None) in FAMILIES and obj.name not in snapshot[0]):
                # (an object whose name the import just registered is that family: the module registered it)
                fam = _coerce_family(obj, None)  # its messages are prefixed with `where` below
                with _LOCK:
                    if fam.name in FAMILIES:
                        owner = "a shipped family" if _SOURCES.get(fam.name) == SHIPPED else "a registered one"
                        raise PluginError(f"family name {fam.name!r} clashes with {owner}")
                    _install(fam, where)
        if ep.name not in FAMILIES:
            raise PluginError(f"registered no family named {ep.name!r} (registered: "
                              f"{sorted(set(FAMILIES) - set(snapshot[0])) or 'none'}); the entry point's name must be "
                              f"the family's name")
    except Exception as e:  # noqa: BLE001 - whatever loading raised, with the entry point named
        _restore(snapshot)
        if isinstance(e, PluginError):
            raise PluginError(f"{where}: {e}") from None
        raise PluginError(f"{where}: loading it failed: {type(e).__name__}: {e}") from e


def _lookup_plugins(name: str) -> None:
    """Make `name` registered if a plugin of HYPERZERO_PLUGINS or an entry point provides it."""
    _load_env_plugins()
    if name in FAMILIES:
        return
    for ep in _entry_points():
        if ep.name == name:
            _load_entry_point(ep)
            return


# ------------------------------------------------------------------------------------------------ lookup
def family_names(load: bool = False) -> list[str]:
    """Every family name: registered ones, then those entry points offer (loaded only with `load=True`)."""
    _load_env_plugins()
    names = list(FAMILIES)
    for ep in _entry_points():
        if ep.name not in names:
            if load:
                _load_entry_point(ep)
            names.append(ep.name)
    return names


def has_family(name: str) -> bool:
    """True when `name` is a registered family or a plugin provides it (loading the plugin)."""
    if not isinstance(name, str):
        return False
    if name not in FAMILIES:
        _lookup_plugins(name)
    return name in FAMILIES


def get_family(name: str):
    """The family called `name` (see the module doc for where it is looked up); ValueError if none is."""
    if isinstance(name, str) and name not in FAMILIES:
        _lookup_plugins(name)
    if not isinstance(name, str) or name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of: {', '.join(family_names())}; {HOW_TO_ADD}")
    return FAMILIES[name]


def family_source(name: str) -> str | None:
    """Where a registered family came from: "module m", "entry point ...", "hyperzero (shipped)", or None."""
    return _SOURCES.get(name)


__all__ = ["BUILTIN_FAMILIES", "ENTRY_POINT_GROUP", "FAMILIES", "PLUGINS_ENV", "PluginError", "family_names",
           "family_source", "get_family", "has_family", "load_plugin", "load_plugins", "register_family",
           "unregister_family"]
