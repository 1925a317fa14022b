"""The training loop shared by every method: grouped batches -> `model.loss` -> Adam, with validation,
checkpoint selection, early stopping, resumable checkpoints, curves and a progress bar.

Selection (`selection`, resolved by `fit`):
  * "return":   every `eval_interval` steps the zero-shot policy of each validation task is rolled out
                (`val_rollouts(model) -> {"return": ...}`); the checkpoint with the highest mean return is
                kept in best.pt. This is what the evaluation reports, so no method can win by fitting the
                expert's idiosyncratic actions early (validation action MSE can rise while return improves).
  * "val_loss": the lowest `cfg.val_metric` on the fixed validation batch (default: zero-shot action MSE).
  * "last":     no best.pt; the final weights are the model.
Validation losses are logged at every evaluation in all cases (curves), and the rollouts run at least
at the final step when `val_rollouts` is given, so every fit records its final validation return.

Hooks a method may define (MAML / PEARL use the same loop):
  * `model.loss(batch) -> (loss, metrics)`                      required (Approximator)
  * `model.configure_optimizer(lr) -> torch.optim.Optimizer`     optional; default Adam(model.parameters(), lr)
  * `model.validation_loss(batch) -> (loss, metrics)`           optional; default `model.loss`
  * `model.zero_shot_metric`                                     the metric measuring the zero-shot policy
Validation runs without gradients, except for meta methods (`is_meta`), whose loss adapts inside.
`callbacks` are called as `cb(step, metrics)` after every gradient step (tests use them to interrupt).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from hyperzero.models.base import Approximator, TaskBatch
from hyperzero.training.config import FitConfig
from hyperzero.training.data import TaskSampler, chunks
from hyperzero.utils.curves import CurveLogger
from hyperzero.utils.io import atomic_torch_save, load_torch

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


@dataclass
class LoopState:
    step: int = 0                   # gradient steps taken
    best_val: float = math.inf      # best validation metric so far
    best_step: int = -1             # step of best.pt (-1: none yet)
    evals_since_best: int = 0       # for early stopping
    stopped_early: bool = False
    train_seconds: float = 0.0      # wall time spent in this loop, summed over resumptions (validation included)
    cpu_seconds: float = 0.0        # process CPU time of the same (not inflated by other work on the cores)
    val_seconds: float = 0.0        # of which validation: loss batches and rollouts
    rollout_seconds: float = 0.0    # of which validation rollouts
    last_val: dict = field(default_factory=dict)  # metrics of the latest evaluation


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
    out = {k: v / n for k, v in totals.items()}
    zero_shot = getattr(model, "zero_shot_metric", "action_loss")
    if zero_shot in out:
        out["zero_shot_action_loss"] = out[zero_shot]
    return out


def selection_score(selection: str, val: dict[str, float], val_metric: str) -> tuple[str, float] | None:
    """(metric name, value) that `selection` ranks checkpoints by, or None when `val` lacks it."""
    name = "return" if selection == "return" else val_metric
    if selection == "last":  # nothing is selected, but the sweep and the report still want a validation score
        name = "return" if "return" in val else val_metric
    return (name, float(val[name])) if name in val else None


def higher_is_better(metric: str) -> bool:
    return metric == "return"


def train_loop(model: Approximator, sampler: TaskSampler, cfg: FitConfig, out_dir: str | Path,
               val_batch: Optional[TaskBatch] = None, callbacks: Sequence[Callable[[int, dict], None]] = (),
               progress: bool = True, val_rollouts: Optional[Callable[[Approximator], dict]] = None,
               selection: Optional[str] = None) -> LoopState:
    """Train `model` for cfg.steps gradient steps, resuming from `out_dir/checkpoint.pt` if present.

    `selection` is "return" (needs `val_rollouts`), "val_loss" (needs `val_batch`) or "last"; None picks
    "val_loss" when there is a validation batch, else "last"."""
    out = Path(out_dir)
    selection = selection or ("val_loss" if val_batch is not None else "last")
    if selection == "return" and val_rollouts is None:
        raise ValueError("selection='return' needs validation rollouts (validation tasks in an environment family)")
    if selection == "val_loss" and val_batch is None:
        raise ValueError("selection='val_loss' needs validation tasks; use selection='last' or a val_fraction > 0")
    optimizer = make_optimizer(model, cfg.lr)
    state = LoopState()
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_torch(ckpt_path, map_location=sampler.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())   # a CPU byte tensor, which map_location may have moved
        state = LoopState(**ckpt["state"])

    def save_checkpoint() -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                           "state": asdict(state)}, ckpt_path)

    def rollouts() -> dict[str, float]:
        t0 = time.perf_counter()
        model.eval()
        out = val_rollouts(model)
        model.train()
        state.rollout_seconds += time.perf_counter() - t0
        state.val_seconds += time.perf_counter() - t0
        return out

    def evaluate(final: bool) -> None:
        t0 = time.perf_counter()
        val = validate(model, val_batch, sampler.k)
        model.train()
        state.val_seconds += time.perf_counter() - t0
        if val_rollouts is not None and (selection == "return" or final):
            val.update(rollouts())
        if selection == "val_loss" and cfg.val_metric not in val:
            raise ValueError(f"val_metric {cfg.val_metric!r} is not reported by {cfg.method}; "
                             f"choose one of {sorted(val)}")
        state.last_val = val
        scored = selection_score(selection, val, cfg.val_metric)
        if selection != "last" and scored is not None:
            name, value = scored
            score = -value if higher_is_better(name) else value   # internal: lower is better
            if score < state.best_val:
                state.best_val, state.best_step, state.evals_since_best = score, state.step, 0
                atomic_torch_save({"model": model.state_dict(), "step": state.step, "val": val}, out / BEST)
            else:
                state.evals_since_best += 1
                if cfg.patience and state.evals_since_best >= cfg.patience:
                    state.stopped_early = True
        best = {"val/best": -state.best_val if selection == "return" else state.best_val} \
            if selection != "last" and math.isfinite(state.best_val) else {}
        logger.log(state.step, {**{f"val/{k}": v for k, v in val.items()}, **best})

    logger = CurveLogger(out, resume_step=state.step)
    sums: dict[str, float] = {}
    n_sum, t_log = 0, time.perf_counter()
    t_start = time.perf_counter() - state.train_seconds
    cpu_start = time.process_time() - state.cpu_seconds
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.method, disable=not progress, dynamic_ncols=True)
    has_val = val_batch is not None or val_rollouts is not None
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

            if has_val and (state.step % cfg.eval_interval == 0 or state.step == cfg.steps):
                evaluate(final=state.step == cfg.steps)
                if state.stopped_early and val_rollouts is not None and "return" not in state.last_val:
                    state.last_val.update(rollouts())  # stopped early on val_loss: still record the final return
                    logger.log(state.step, {"val/return": state.last_val["return"]})

            if state.step % cfg.checkpoint_interval == 0 or state.stopped_early or state.step >= cfg.steps:
                state.train_seconds = time.perf_counter() - t_start
                state.cpu_seconds = time.process_time() - cpu_start
                save_checkpoint()
    finally:
        bar.close()
        logger.close()
    state.train_seconds = time.perf_counter() - t_start
    state.cpu_seconds = time.process_time() - cpu_start
    return state
