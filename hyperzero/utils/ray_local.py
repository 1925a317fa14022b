"""Ray for every parallel stage: connect to a cluster, or start a local instance bound to loopback only, and run
jobs there with the contract of the local pool (`run_on_ray`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from hyperzero.utils.workers import RESUME_HINT, WorkerDiedError

__all__ = ["RESUME_HINT", "WorkerDiedError", "run_on_ray", "start_ray", "worker_died"]

R = TypeVar("R")


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


def run_on_ray(fn: Callable[..., R], jobs: Sequence[tuple], *, address: str | None = None, num_cpus: float = 1,
               describe: Callable[[int, tuple], str] = lambda i, job: f"running job {i}",
               on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """fn(*job) for every job as one Ray task each (`num_cpus` CPUs, never retried); results in the jobs' order.

    The contract of `hyperzero.utils.workers.WorkerPool.map`: `on_result(index, result)` in this process as each
    task ends; the first task that fails cancels the others and its exception is raised here with its own type
    and message; a lost worker, node or object is a one-line WorkerDiedError naming `describe(index, job)`.
    Connects to `address`, or starts a local loopback-only Ray (`start_ray`), shut down again at the end. Files
    the tasks write must be on storage every node sees.
    """
    import ray

    jobs = list(jobs)
    started = start_ray(address)
    try:
        remote = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
        refs = [remote.remote(*job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(jobs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                try:
                    results[i] = ray.get(ref)  # re-raises the task's exception here
                except Exception as e:  # noqa: BLE001 - a lost worker is one line; a task's own error is itself
                    for other in pending:
                        try:
                            ray.cancel(other)
                        except Exception:  # noqa: BLE001 - already finished or gone: nothing left to stop
                            pass
                    died = worker_died(e, describe(i, jobs[i]))
                    if died is None:
                        raise
                    raise died from None
                if on_result is not None:
                    on_result(i, results[i])
        return results
    finally:
        if started:
            ray.shutdown()
