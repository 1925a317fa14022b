"""One contract for every parallel stage, in spawn processes and on Ray: results in the jobs' order, the first
failure stops the jobs not yet started and is raised as itself, a dead worker is a one-line WorkerDiedError."""
import os
import signal
import time
from pathlib import Path

import pytest

from hyperzero.utils.workers import WorkerDiedError, WorkerPool, run_in_processes


def slow_square(x: int, delay: float) -> int:
    time.sleep(delay)
    return x * x


def fail_or_mark(index: int, marks: str) -> int:
    if index == 0:
        raise ValueError("job 0 is broken")
    time.sleep(0.2)
    Path(marks, f"{index}").touch()
    return index


def die(_: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer does


def parent_and_threads(_: int) -> tuple[int, int]:
    import torch

    return os.getppid(), torch.get_num_threads()


def test_results_come_in_the_jobs_order_and_each_is_reported_as_it_ends():
    ended = []
    # the first job ends last: the results are still in the jobs' order
    results = run_in_processes(slow_square, [(3, 1.5), (4, 0.0), (5, 0.0)], 2,
                               on_result=lambda i, r: ended.append((i, r)))
    assert results == [9, 16, 25]
    assert sorted(ended) == [(0, 9), (1, 16), (2, 25)] and ended[-1] == (0, 9)


def test_the_first_failure_is_raised_as_itself_and_cancels_the_jobs_not_started(tmp_path):
    jobs = [(i, str(tmp_path)) for i in range(20)]
    with pytest.raises(ValueError, match="job 0 is broken"):
        run_in_processes(fail_or_mark, jobs, 1)
    started = sorted(int(p.name) for p in tmp_path.iterdir())
    # only the few jobs already handed to the worker's queue run (without the cancel all 19 would)
    assert len(started) <= 5, started


def test_a_killed_worker_is_one_line_naming_the_job():
    with pytest.raises(WorkerDiedError) as err:
        run_in_processes(die, [(0,)], 1, describe=lambda i, job: f"fitting hyperzero seed {job[0]}")
    text = str(err.value)
    assert "\n" not in text and "a worker process died while fitting hyperzero seed 0" in text
    assert "rerun the same command to resume" in text


def test_workers_are_spawned_children_with_the_threads_asked_for():
    with WorkerPool(1, threads=2) as pool:
        first = pool.map(parent_and_threads, [(0,)])
        second = pool.map(parent_and_threads, [(1,)])  # the pool serves several maps
    assert first == second == [(os.getpid(), 2)]


def test_no_jobs_start_no_processes():
    assert run_in_processes(die, [], 4) == []


class FakeRay:
    """Just enough of `ray` to drive run_on_ray without starting it: tasks run when they are waited for."""

    def __init__(self, fn_outcomes):
        self.outcomes, self.cancelled = fn_outcomes, []

    def remote(self, num_cpus, max_retries):
        assert max_retries == 0  # a failed task is not silently rerun

        class Remote:
            def remote(self, *job):
                return ("ref", job)

        return lambda fn: Remote()

    def wait(self, refs, num_returns):
        order = sorted(refs, key=lambda r: -r[1][0])  # the last job ends first
        return order[:1], [r for r in refs if r is not order[0]]

    def get(self, ref):
        outcome = self.outcomes(ref[1][0])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel(self, ref):
        self.cancelled.append(ref[1][0])


@pytest.fixture
def fake_ray(monkeypatch):
    ray = pytest.importorskip("ray")
    from hyperzero.utils import ray_local

    def install(outcomes):
        fake = FakeRay(outcomes)
        monkeypatch.setattr(ray_local, "start_ray", lambda address: False)
        for name in ("remote", "wait", "get", "cancel"):
            monkeypatch.setattr(ray, name, getattr(fake, name))
        return fake

    return install


def test_ray_results_come_in_the_jobs_order(fake_ray):
    from hyperzero.utils.ray_local import run_on_ray

    fake_ray(lambda x: x * 10)
    ended = []
    assert run_on_ray(slow_square, [(1,), (2,), (3,)], on_result=lambda i, r: ended.append(i)) == [10, 20, 30]
    assert ended == [2, 1, 0]


def test_ray_first_failure_is_raised_as_itself_and_cancels_the_rest(fake_ray):
    from hyperzero.utils.ray_local import run_on_ray

    fake = fake_ray(lambda x: ValueError("job 2 is broken") if x == 2 else x)
    with pytest.raises(ValueError, match="job 2 is broken"):
        run_on_ray(slow_square, [(0,), (1,), (2,)])
    assert sorted(fake.cancelled) == [0, 1]


def test_ray_lost_worker_is_one_line_naming_the_job(fake_ray):
    import ray.exceptions as rx

    from hyperzero.utils.ray_local import run_on_ray

    fake_ray(lambda x: rx.WorkerCrashedError())
    with pytest.raises(WorkerDiedError, match="a Ray worker died while fitting job 0 .*WorkerCrashedError.*rerun"):
        run_on_ray(slow_square, [(0,)], describe=lambda i, job: f"fitting job {job[0]}")
