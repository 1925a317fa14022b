"""Families of your own: each test leaves the registry, Gymnasium's registry and HYPERZERO_PLUGINS as it found them."""
import os
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent
PENDULUM = PLUGINS / "pendulum_family.py"
DMC = PLUGINS / "dmc_family.py"
ROOT = PLUGINS.parents[1]


@pytest.fixture
def registry_guard():
    """Restore the family registry (and what plugins loading touched) after the test."""
    from hyperzero.envs import registry

    snapshot = registry._snapshot()
    env = os.environ.get(registry.PLUGINS_ENV)
    loaded = set(registry._ENV_LOADED)
    files = dict(registry._FILE_PLUGINS)
    modules = set(sys.modules)
    yield registry
    registry._restore(snapshot)
    if env is None:
        os.environ.pop(registry.PLUGINS_ENV, None)
    else:
        os.environ[registry.PLUGINS_ENV] = env
    registry._ENV_LOADED.clear()
    registry._ENV_LOADED.update(loaded)
    for path in set(registry._FILE_PLUGINS) - set(files):
        registry._forget_file(path)
    for name in set(sys.modules) - modules:
        if name.startswith(("pendulum_family", "dmc_family", "plugin_", "hyperzero_plugin_")):
            sys.modules.pop(name, None)


def cli_env(**extra) -> dict:
    """Environment of a `hyperzero` subprocess: this venv first on PATH, headless MuJoCo, no inherited plugins."""
    env = {k: v for k, v in os.environ.items() if k != "HYPERZERO_PLUGINS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MUJOCO_GL"] = "egl"
    env.update(extra)
    return env
