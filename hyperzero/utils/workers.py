"""Local worker processes: how many threads each gets, that none outlives the process that started it, and one
pool (`WorkerPool`, `run_in_processes`) that every parallel stage runs its jobs with (`ray_local.run_on_ray` is the
same contract on Ray)."""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

R = TypeVar("R")

RESUME_HINT = "what had finished is kept; rerun the same command to resume"


class WorkerDiedError(RuntimeError):
    """A worker process (Ray or local) died under a task, e.g. killed or out of memory. One line: what died."""


def default_threads(workers: int) -> int:
    """Torch threads per worker when `workers` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def exit_with_parent(parent_pid: int, poll_seconds: float = 2.0) -> None:
    """Make this worker stop when the process that started it dies (e.g. SIGKILL): no orphans keep computing.

    The worker's last checkpoint stays valid, so rerunning the parent's command resumes from it.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _start_worker(parent_pid: int, threads: int | None) -> None:
    """Each pool process, once: stop with the parent; `threads` torch threads (None: leave torch's default)."""
    exit_with_parent(parent_pid)
    if threads:
        import torch

        torch.set_num_threads(threads)


def _job_name(index: int, job: tuple) -> str:
    return f"running job {index}"


class WorkerPool:
    """`workers` spawn processes that run picklable functions over lists of jobs; reusable for several `map`s.

        with WorkerPool(workers, threads=default_threads(workers)) as pool:
            results = pool.map(entry, [(a, b), (c, d)], describe=lambda i, job: f"fitting {job[0]}")

    Spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock. Every worker exits
    when this process dies (`exit_with_parent`), and sets `threads` torch threads before its first job, so a job
    function needs neither of its own (pass no parent pid). Leaving
    the `with` block waits for the jobs still running (they finish, or reach their next checkpoint) and drops the
    queued ones.
    """

    def __init__(self, workers: int, *, threads: int | None = None):
        self.workers = max(1, int(workers))
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                         initializer=_start_worker, initargs=(os.getpid(), threads))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable[..., R], jobs: Sequence[tuple], *,
            describe: Callable[[int, tuple], str] = _job_name,
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        """fn(*job) for every job; the results in the jobs' order.

        `on_result(index, result)` is called in this process as each job ends (in the order they end): write a
        job's output there so that a rerun after a crash finds it. The first job that fails cancels the jobs not
        yet started and its exception is raised here, with its own type and message; a worker that died (killed,
        out of memory) raises WorkerDiedError naming `describe(index, job)` (e.g. "fitting hyperzero seed 0").
        """
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        jobs = list(jobs)
        futures = {self._pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        results: list = [None] * len(jobs)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            failed = None
            for future in sorted(done, key=futures.__getitem__):
                i = futures[future]
                if future.exception() is not None:
                    failed = failed or future
                    continue
                results[i] = future.result()
                if on_result is not None:  # jobs that ended with the failing one are still kept
                    on_result(i, results[i])
            if failed is not None:
                for other in pending:
                    other.cancel()  # queued jobs do not start; running ones finish (or checkpoint)
                i, error = futures[failed], failed.exception()
                if isinstance(error, BrokenProcessPool):
                    raise WorkerDiedError(f"a worker process died while {describe(i, jobs[i])} (killed, or out "
                                          f"of memory?); {RESUME_HINT}") from None
                raise error
        return results


def run_in_processes(fn: Callable[..., R], jobs: Sequence[tuple], workers: int, *, threads: int | None = None,
                     describe: Callable[[int, tuple], str] = _job_name,
                     on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """fn(*job) for every job in at most `workers` spawn processes (never more than the jobs); results in the
    jobs' order. The contract of `WorkerPool` (which see): the first failure cancels the jobs not started and is
    re-raised, a dead worker is a one-line WorkerDiedError naming `describe(index, job)`, `on_result(index,
    result)` as each job ends. `fn` must be importable by a fresh process (a module-level function)."""
    jobs = list(jobs)
    if not jobs:
        return []
    with WorkerPool(min(workers, len(jobs)), threads=threads) as pool:
        return pool.map(fn, jobs, describe=describe, on_result=on_result)
