"""Ray for every parallel stage: connect to a cluster, or start a local instance bound to loopback only."""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> str:
    """The folder holding the `hyperzero` package (put on the Ray workers' PYTHONPATH)."""
    import hyperzero

    return str(Path(hyperzero.__file__).resolve().parent.parent)


LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # makes Ray use 127.0.0.1 as the node IP: every socket on loopback
    "RAY_USAGE_STATS_ENABLED": "0",  # no telemetry
    "RAY_AUTH_MODE": "disabled",  # token auth breaks the `ray status` CLI and buys nothing on loopback
}


def worker_env_vars() -> dict[str, str]:
    """Env vars every Ray worker needs (a raylet does not pass the driver's environment on)."""
    env = {k: os.environ[k] for k in ("MUJOCO_GL", "PYOPENGL_PLATFORM") if k in os.environ}
    root = repo_root()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return env


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to `address`, or start a local loopback-only instance. Returns True if we started Ray here."""
    if not address:
        for k, v in LOOPBACK_ENV.items():
            os.environ[k] = v  # before `import ray`: ray_constants reads them at import; child processes inherit them
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": worker_env_vars()}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        return True
    # Ray may have been imported before the env var was set (e.g. by the caller): its constant is read at import.
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=runtime_env)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":
        ray.shutdown()
        raise RuntimeError(f"local Ray bound to {node_ip}, not 127.0.0.1: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 did not "
                           "take effect (was Ray imported and started before?)")
    return True


class WorkerDiedError(RuntimeError):
    """A worker process (Ray or local) died under a task, e.g. killed or out of memory. One line: what died."""


RESUME_HINT = "what had finished is kept; rerun the same command to resume"


def worker_died(error: BaseException, what: str) -> WorkerDiedError | None:
    """A one-line WorkerDiedError when `error` means Ray lost the worker, node or object running `what` (not an
    exception the task itself raised, which keeps its own type and message); None otherwise."""
    try:
        import ray.exceptions as rx
    except ImportError:
        return None
    if not isinstance(error, rx.RayError) or isinstance(error, rx.RayTaskError):
        return None
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    first = first if len(first) <= 200 else first[:200] + "..."
    return WorkerDiedError(f"a Ray worker died while {what} ({type(error).__name__}: {first}); {RESUME_HINT}")
