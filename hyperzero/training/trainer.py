"""`fit`: one method, one split seed -> a fit directory; `load_fit`: a fit directory -> a usable model.

    <out>/split.json       train / val / test task ids (test tasks never reach the sampler)
    <out>/run_info.json    resolved config (γ, K, B/K, normalisation), seeds, versions, split, command
    <out>/progress.csv, tb/  training curves (train/*) and validation curves (val/*)
    <out>/checkpoint.pt    resumable state (model, optimiser, RNG, step, best val); rerun to continue
    <out>/best.pt          weights with the best validation metric so far
    <out>/model.pt         the selected model (best.pt, or the final weights when there are no val tasks)
    <out>/done.json        written last; a fit with done.json is never retrained
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperzero.models.base import Approximator, TaskBatch
from hyperzero.models.registry import build_method
from hyperzero.training.config import FitConfig
from hyperzero.training.data import ContextNormalizer, TaskSampler, validation_batch
from hyperzero.training.loop import BEST, train_loop
from hyperzero.utils.io import atomic_torch_save, atomic_write_json, read_json
from hyperzero.utils.runinfo import write_run_info
from hyperzero.utils.torch_utils import resolve_device, seed_everything

MODEL = "model.pt"
DONE = "done.json"
# fields that may change between an interrupted run and its resumption
_RESUMABLE_CHANGES = {"device", "num_threads", "log_interval", "checkpoint_interval", "steps", "patience"}


def _load(dataset):
    if isinstance(dataset, (str, os.PathLike)):
        from hyperzero.datasets import load_dataset

        return load_dataset(dataset)
    return dataset


def resolve_config(cfg: FitConfig, dataset) -> FitConfig:
    """Fill what depends on the data: the TD discount (the dataset's γ unless cfg.td_gamma is set)."""
    gamma = float(dataset.gamma) if cfg.td_gamma is None else float(cfg.td_gamma)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, gamma=gamma))


def fit(dataset, out_dir: str | Path, cfg: FitConfig | None = None, progress: bool = True,
        callbacks=()) -> Path:
    """Train `cfg.method` on the TRAIN tasks of split `cfg.seed` of `dataset` (a directory or a loaded
    RolloutDataset); select on the VAL tasks; never touch the TEST tasks. Resumes if interrupted."""
    from hyperzero.datasets.splits import Split, make_split

    cfg = cfg or FitConfig()
    cfg.check()
    ds = _load(dataset)
    out = Path(out_dir)
    resolved = resolve_config(cfg, ds)
    if (out / "run_info.json").exists():
        old = read_json(out / "run_info.json")["config"]
        new = asdict(resolved)
        diff = sorted(k for k in new if k not in _RESUMABLE_CHANGES and _jsonable(old.get(k)) != _jsonable(new[k]))
        if diff:
            state = "a finished" if (out / DONE).exists() else "an unfinished"
            raise ValueError(f"{out} holds {state} fit with a different config (fields {diff}); "
                             "rerun with the same options to resume or skip it, or choose a new --out")
    if (out / DONE).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)

    # --- split: train / val / test task ids (stored; the same on resumption) ---
    split = make_split(ds.task_ids, cfg.seed, cfg.protocol, cfg.val_fraction)
    if (out / "split.json").exists() and Split.from_json(out / "split.json").test != split.test:
        raise ValueError(f"{out}/split.json differs from split seed {cfg.seed} of this dataset; use a new --out")
    split.to_json(out / "split.json")
    by_id = {t.task_id: t for t in ds.tasks}
    train_tasks = [by_id[i] for i in split.train]
    val_tasks = [by_id[i] for i in split.val]
    held_out = set(split.test) | set(split.val)
    assert not held_out & {t.task_id for t in train_tasks}, "test/val tasks in the training set"

    # --- model, data ---
    normalizer = ContextNormalizer.for_dataset(ds, cfg.context_norm)
    seed_everything(cfg.seed)
    model = build_method(cfg.method, len(ds.context_names), ds.obs_dim, ds.act_dim, resolved.model).to(device)
    need_q = bool(getattr(model, "has_q", False))
    sampler = TaskSampler(train_tasks, np.stack([normalizer(t.context_vector) for t in train_tasks]),
                          cfg.tasks_per_batch, cfg.batch_size, cfg.seed, need_q, device, forbidden=held_out)
    val_batch = validation_batch(val_tasks, np.stack([normalizer(t.context_vector) for t in val_tasks])
                                 if val_tasks else None, cfg.val_samples_per_task, cfg.seed + 1, need_q, device)
    write_run_info(out, resolved, seeds={"split": cfg.seed, "init": cfg.seed, "sampler": cfg.seed,
                                         "validation_samples": cfg.seed + 1},
                   split=asdict(split), method=cfg.method, dataset=str(getattr(ds, "directory", "")),
                   family=ds.family, context_names=list(ds.context_names), normalizer=normalizer.state_dict(),
                   effective={"tasks_per_batch": sampler.k, "samples_per_task": sampler.per_task,
                              "batch_size": sampler.k * sampler.per_task, "td_gamma": resolved.model.gamma,
                              "device": str(device), "torch_threads": torch.get_num_threads()},
                   n_params=sum(p.numel() for p in model.parameters()))

    state = train_loop(model, sampler, resolved, out, val_batch, callbacks=callbacks, progress=progress)

    # --- select (best validation checkpoint, else the final weights) and publish ---
    selected = "final"
    if val_batch is not None and (out / BEST).exists():
        model.load_state_dict(torch.load(out / BEST, map_location=device, weights_only=True)["model"])
        selected = "best"
    atomic_torch_save({"method": cfg.method, "ctx_dim": len(ds.context_names), "obs_dim": ds.obs_dim,
                       "act_dim": ds.act_dim, "config": _jsonable(asdict(resolved)), "family": ds.family,
                       "context_names": list(ds.context_names), "normalizer": normalizer.state_dict(),
                       "split": asdict(split), "selected": selected,
                       "step": state.best_step if selected == "best" else state.step,
                       "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, out / MODEL)
    atomic_write_json(out / DONE, {"finished": True, "method": cfg.method, "seed": cfg.seed, "steps": state.step,
                                   "selected": selected, "best_step": state.best_step,
                                   "best_val": state.best_val if np.isfinite(state.best_val) else None,
                                   "val_metric": cfg.val_metric, "stopped_early": state.stopped_early,
                                   "train_seconds": state.train_seconds,
                                   "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


class TrainedModel:
    """A fitted approximator with its context normalisation and split (what evaluation needs)."""

    def __init__(self, model: Approximator, method: str, split, context_names: list[str], family: str,
                 normalizer: ContextNormalizer, config: FitConfig, fit_dir: Path | None = None):
        self.model, self.method, self.split = model, method, split
        self.context_names, self.family, self.normalizer, self.config = context_names, family, normalizer, config
        self.fit_dir = fit_dir

    @property
    def has_q(self) -> bool:
        return bool(getattr(self.model, "has_q", False))

    @property
    def is_meta(self) -> bool:
        return bool(getattr(self.model, "is_meta", False))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize_context(self, context) -> np.ndarray:
        """Context dict (or raw vector in context_names order) -> the model's input vector [d]."""
        return self.normalizer(context)

    def policy(self, context):
        """Zero-shot policy for a context dict: `.act(obs)` (numpy or torch), `.q(obs, act)` if has_q."""
        return self.model.policy(torch.as_tensor(self.normalize_context(context), device=self._device()))

    def adapt(self, context, transitions):
        """Few-shot policy (meta methods): `transitions` is a TaskBatch with K=1 or a dict of [N, ...]
        arrays `obs, action, reward, next_obs` (+ optional `terminated`, `q`) from the target task."""
        ctx = torch.as_tensor(self.normalize_context(context), device=self._device())
        if not isinstance(transitions, TaskBatch):
            t = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in transitions.items()}
            missing = [k for k in ("obs", "action", "reward", "next_obs") if k not in t]
            if missing:
                raise ValueError(f"transitions lack {missing}; give obs, action, reward, next_obs arrays [N, ...]")
            n = t["obs"].shape[0]
            transitions = TaskBatch(context=ctx[None], obs=t["obs"][None], action=t["action"][None],
                                    reward=t["reward"].reshape(1, n), next_obs=t["next_obs"][None],
                                    terminated=t.get("terminated", torch.zeros(n)).reshape(1, n),
                                    q=t.get("q", torch.zeros(n)).reshape(1, n))
        return self.model.adapt(ctx, transitions.to(self._device()))


def load_fit(fit_dir: str | Path, device: str = "cpu") -> TrainedModel:
    """Load `fit_dir/model.pt` (written by `fit`) on `device`."""
    from hyperzero.datasets.splits import Split

    path = Path(fit_dir) / MODEL
    if not path.exists():
        hint = " (the fit is unfinished: rerun `hyperzero fit` with the same options)" if (Path(fit_dir) / "checkpoint.pt").exists() else ""
        raise FileNotFoundError(f"{path} does not exist{hint}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    cfg = FitConfig.from_dict(payload["config"])
    model = build_method(payload["method"], payload["ctx_dim"], payload["obs_dim"], payload["act_dim"], cfg.model)
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    split = Split(**{k: v for k, v in payload["split"].items() if k in Split.__dataclass_fields__})
    return TrainedModel(model, payload["method"], split, payload["context_names"], payload["family"],
                        ContextNormalizer.from_state_dict(payload["normalizer"]), cfg, Path(fit_dir))
