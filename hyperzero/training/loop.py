"""The training loop shared by every method: grouped batches -> `model.loss` -> Adam, with validation,
best-checkpoint selection, early stopping, resumable checkpoints, curves and a progress bar.

Hooks a method may define (MAML / PEARL use the same loop):
  * `model.loss(batch) -> (loss, metrics)`                      required (Approximator)
  * `model.configure_optimizer(lr) -> torch.optim.Optimizer`     optional; default Adam(model.parameters(), lr)
  * `model.validation_loss(batch) -> (loss, metrics)`           optional; default `model.loss`
Validation runs without gradients, except for meta methods (`is_meta`), whose loss adapts inside.
`callbacks` are called as `cb(step, metrics)` after every gradient step (tests use them to interrupt).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from hyperzero.models.base import Approximator, TaskBatch
from hyperzero.training.config import FitConfig
from hyperzero.training.data import TaskSampler, chunks
from hyperzero.utils.curves import CurveLogger
from hyperzero.utils.io import atomic_torch_save

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


@dataclass
class LoopState:
    step: int = 0                   # gradient steps taken
    best_val: float = math.inf      # best validation metric so far
    best_step: int = -1             # step of best.pt (-1: none yet)
    evals_since_best: int = 0       # for early stopping
    stopped_early: bool = False
    train_seconds: float = 0.0      # wall time spent in this loop, summed over resumptions


def make_optimizer(model: Approximator, lr: float) -> torch.optim.Optimizer:
    """Adam (authors' settings). The fused kernel is ~3x faster than the default for-loop Adam on CPU,
    where the optimiser step dominates HyperZero's 3.6M-parameter heads (docs/benchmarks-training.md)."""
    if hasattr(model, "configure_optimizer"):
        return model.configure_optimizer(lr)
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device/dtype without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=lr)


def validate(model: Approximator, batch: Optional[TaskBatch], tasks_per_batch: int) -> dict[str, float]:
    """Mean of the method's metrics over the fixed validation batch, in chunks of K tasks."""
    if batch is None:
        return {}
    fn = getattr(model, "validation_loss", model.loss)
    totals: dict[str, float] = {}
    n = 0
    with torch.set_grad_enabled(bool(model.is_meta)):
        for part in chunks(batch, tasks_per_batch):
            _, metrics = fn(part)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) * part.num_tasks
            n += part.num_tasks
    model.zero_grad(set_to_none=True)
    return {k: v / n for k, v in totals.items()}


def train_loop(model: Approximator, sampler: TaskSampler, cfg: FitConfig, out_dir: str | Path,
               val_batch: Optional[TaskBatch] = None, callbacks: Sequence[Callable[[int, dict], None]] = (),
               progress: bool = True) -> LoopState:
    """Train `model` for cfg.steps gradient steps, resuming from `out_dir/checkpoint.pt` if present."""
    out = Path(out_dir)
    optimizer = make_optimizer(model, cfg.lr)
    state = LoopState()
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=sampler.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = LoopState(**ckpt["state"])

    def save_checkpoint() -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                           "state": asdict(state)}, ckpt_path)

    logger = CurveLogger(out, resume_step=state.step)
    sums: dict[str, float] = {}
    n_sum, t_log = 0, time.perf_counter()
    t_start = time.perf_counter() - state.train_seconds
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.method, disable=not progress, dynamic_ncols=True)
    try:
        model.train()
        while state.step < cfg.steps and not state.stopped_early:
            batch = sampler.sample()
            loss, metrics = model.loss(batch)
            if not torch.isfinite(loss):
                raise ValueError(f"non-finite training loss at step {state.step} ({metrics}); "
                                 f"lower the learning rate (lr={cfg.lr}) or check the dataset for NaN/inf")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            bar.update(1)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n_sum += 1
            for cb in callbacks:
                cb(state.step, metrics)

            if state.step % cfg.log_interval == 0:
                dt = time.perf_counter() - t_log
                row = {f"train/{k}": v / n_sum for k, v in sums.items()}
                row["train/samples_per_s"] = n_sum * sampler.k * sampler.per_task / max(dt, 1e-9)
                logger.log(state.step, row)
                bar.set_postfix(loss=f"{row['train/loss']:.4g}")
                sums, n_sum, t_log = {}, 0, time.perf_counter()

            if val_batch is not None and (state.step % cfg.eval_interval == 0 or state.step == cfg.steps):
                val = validate(model, val_batch, sampler.k)
                model.train()
                if cfg.val_metric not in val:
                    raise ValueError(f"val_metric {cfg.val_metric!r} is not reported by {cfg.method}; "
                                     f"choose one of {sorted(val)}")
                score = val[cfg.val_metric]
                if score < state.best_val:
                    state.best_val, state.best_step, state.evals_since_best = score, state.step, 0
                    atomic_torch_save({"model": model.state_dict(), "step": state.step, "val": val}, out / BEST)
                else:
                    state.evals_since_best += 1
                    if cfg.patience and state.evals_since_best >= cfg.patience:
                        state.stopped_early = True
                logger.log(state.step, {**{f"val/{k}": v for k, v in val.items()}, "val/best": state.best_val})

            if state.step % cfg.checkpoint_interval == 0 or state.stopped_early or state.step >= cfg.steps:
                state.train_seconds = time.perf_counter() - t_start
                save_checkpoint()
    finally:
        bar.close()
        logger.close()
    state.train_seconds = time.perf_counter() - t_start
    return state
