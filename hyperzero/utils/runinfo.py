"""Reproducibility record written by every run: resolved config, seeds, versions, command."""
from __future__ import annotations

import dataclasses
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from hyperzero.utils import hardware
from hyperzero.utils.io import atomic_write_json

_PACKAGES = ("hyperzero", "torch", "numpy", "dm_control", "mujoco", "gymnasium", "ray")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def to_jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def write_run_info(run_dir: str | Path, config: Any, seeds: dict[str, int] | None = None, **extra: Any) -> Path:
    """Write `run_dir/run_info.json` with everything needed to reproduce the run."""
    info = {
        "config": to_jsonable(config),
        "seeds": seeds or {},
        "versions": versions(),
        "cpu": hardware.describe(),
        "command": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    return atomic_write_json(Path(run_dir) / "run_info.json", info)
