"""Many fits of one run's dataset (methods x split seeds): one at a time, in local worker processes, or as Ray tasks.

Each fit writes `<run>/fits/<method>/seed_<k>/` and resumes from its own checkpoint, so a sweep that stops (a
kill, a failed fit) is continued by running it again; `training.outputs.check_fit` says which fits are done.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from hyperzero.training.config import FitConfig
from hyperzero.utils.outputs import say

__all__ = ["fit_dir", "fit_one", "fit_sweep", "local_fit_workers"]


def fit_dir(run_dir: Path, method: str, seed: int) -> Path:
    return Path(run_dir) / "fits" / method / f"seed_{seed}"


def fit_one(run_dir: str, cfg: FitConfig, progress: bool = True) -> str:
    """Fit one (method, split seed) into `<run>/fits/<method>/seed_<k>/`. Runs in-process, in a worker process or as
    a Ray task."""
    from hyperzero.datasets import load_dataset
    from hyperzero.training import fit
    from hyperzero.training.outputs import record_fit_inputs

    out_dir = fit_dir(Path(run_dir), cfg.method, cfg.seed)
    dataset = load_dataset(Path(run_dir) / "dataset")
    record_fit_inputs(out_dir, dataset)
    fit(dataset, out_dir, cfg, progress=progress)
    return str(out_dir)


def local_fit_workers(num_workers: int | None, n_fits: int) -> int:
    """Processes the local executor fits with: `num_workers` (fit.num_workers), or one per core; never more than
    the fits."""
    return max(1, min(num_workers or os.cpu_count() or 1, n_fits))


def _describe(index: int, job: tuple) -> str:
    cfg = job[1]
    return f"fitting {cfg.method} seed {cfg.seed}"


def fit_sweep(run_dir: Path, configs: Sequence[FitConfig], *, num_workers: int | None = None, executor: str = "local",
              address: str | None = None, progress: bool = True) -> None:
    """Fit every config (one per method and split seed) of `run_dir`'s dataset.

    local: by default one process per core, each with its share of the cores' threads when the config leaves
    `num_threads` at 0: a fit's small batches keep one core busy better than two (on 2 cores, two one-thread fits
    at a time finished the quickstart's fit stage 1.6x sooner than one two-thread fit after another;
    docs/pipeline.md). `num_workers=1` fits one at a time in this process, with the config's threads (0 = torch's
    default). ray: one 1-CPU task per fit (one thread unless the config says otherwise); `run_dir` must be on
    storage every node sees. Either way the first fit that fails stops the queued ones and is raised (a dead
    worker as a one-line WorkerDiedError); what finished is kept.
    """
    from tqdm.auto import tqdm

    from hyperzero.utils.workers import default_threads

    run_dir, configs = Path(run_dir), list(configs)

    def done(bar):
        def on_result(i: int, _) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{configs[i].method} seed {configs[i].seed} done")
        return on_result

    if executor == "ray":
        from hyperzero.utils.ray_local import run_on_ray

        jobs = [(str(run_dir), dataclasses.replace(c, num_threads=c.num_threads or 1), False) for c in configs]
        with tqdm(total=len(jobs), desc="fits (ray)", unit="fit", disable=not progress) as bar:
            run_on_ray(fit_one, jobs, address=address, num_cpus=1, describe=_describe, on_result=done(bar))
        return
    workers = local_fit_workers(num_workers, len(configs))
    if workers == 1:
        bar = tqdm(configs, desc="fits", unit="fit", disable=not progress)
        for cfg in bar:
            bar.set_postfix_str(f"{cfg.method} seed {cfg.seed}")
            fit_one(str(run_dir), cfg, progress)
        return
    threads = default_threads(workers)
    jobs = [(str(run_dir), dataclasses.replace(c, num_threads=c.num_threads or threads), False) for c in configs]
    say(f"fits: {workers} processes x {jobs[0][1].num_threads} thread(s)")
    from hyperzero.utils.workers import run_in_processes

    with tqdm(total=len(jobs), desc="fits", unit="fit", disable=not progress) as bar:
        run_in_processes(fit_one, jobs, workers, describe=_describe, on_result=done(bar))
