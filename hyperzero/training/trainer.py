"""`fit`: one method, one split seed -> a fit directory; `load_fit`: a fit directory -> a usable model.

    <out>/split.json       train / val / test task ids (test tasks never reach the sampler)
    <out>/run_info.json    resolved config (γ, κ, K, B/K, normalisation, selection), seeds, versions, split, command
    <out>/progress.csv, tb/  training curves (train/*) and validation curves (val/*, incl. val/return)
    <out>/checkpoint.pt    resumable state (model, optimiser, RNG, step, best val); rerun to continue
    <out>/best.pt          weights with the best validation score so far (selection "return" or "val_loss")
    <out>/model.pt         the selected model (best.pt, or the final weights for selection "last")
    <out>/done.json        written last; a fit with done.json is never retrained
    <out>/lr_sweep.json, lr_sweep/lr_<v>/   with `lr_sweep`: one complete fit per learning rate, and the choice
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperzero.models.base import Approximator, TaskBatch, observation_statistics
from hyperzero.models.registry import build_method
from hyperzero.training.config import FitConfig
from hyperzero.training.data import ContextNormalizer, TaskSampler, context_noise_std, validation_batch
from hyperzero.training.loop import BEST, higher_is_better, selection_score, train_loop
from hyperzero.training.rollout import numpy_policy, rollout_returns
from hyperzero.utils.integrity import read_verified_bytes
from hyperzero.utils.io import atomic_torch_save, atomic_write_bytes, atomic_write_json, load_torch, read_json
from hyperzero.utils.runinfo import write_run_info
from hyperzero.utils.torch_utils import resolve_device, seed_everything

MODEL = "model.pt"
DONE = "done.json"
# fields that may change between an interrupted run and its resumption
_RESUMABLE_CHANGES = {"device", "num_threads", "log_interval", "checkpoint_interval", "steps", "patience"}
LR_SWEEP = "lr_sweep.json"
CONTINUED = "continued_from.json"   # in lr_sweep/final/ when it continued a sweep fit


def _load(dataset):
    if isinstance(dataset, (str, os.PathLike)):
        from hyperzero.datasets import load_dataset

        return load_dataset(dataset)
    return dataset


def flagged_task_ids(dataset) -> list[str]:
    """Tasks whose expert failed its quality check (dataset manifest): never chosen as test tasks when
    others are available, since no score relative to the expert can be computed on them."""
    return sorted(t.task_id for t in dataset.tasks if getattr(getattr(t, "expert", None), "flagged", False))


def dataset_split(cfg: FitConfig, dataset):
    from hyperzero.datasets.splits import make_split

    # validation "train" carves nothing out: every non-test task is a training task
    val_fraction = 0.0 if cfg.validation == "train" else cfg.val_fraction
    return make_split(dataset.task_ids, cfg.seed, cfg.protocol, val_fraction, cfg.test_fraction,
                      cfg.min_test_tasks, never_test=flagged_task_ids(dataset))


def selection_task_ids(cfg: FitConfig, dataset, split) -> list[str]:
    """The tasks checkpoints (and the lr sweep) are selected on: the split's val tasks, or with validation
    "train" `val_train_tasks` of its training tasks (all by default), evenly spaced in context order so they
    span the grid. Never a test task."""
    if cfg.validation != "train":
        return list(split.val)
    by_id = {t.task_id: t for t in dataset.tasks}
    ordered = sorted(split.train, key=lambda i: (tuple(np.asarray(by_id[i].context_vector, float)), i))
    n = len(ordered) if cfg.val_train_tasks is None else min(int(cfg.val_train_tasks), len(ordered))
    picks = sorted({int(round(x)) for x in np.linspace(0, len(ordered) - 1, n)}) if n > 1 else [len(ordered) // 2]
    chosen = [ordered[i] for i in picks]
    _check_fresh_seeds(cfg, [by_id[i] for i in chosen])
    return sorted(chosen)


def _check_fresh_seeds(cfg: FitConfig, tasks) -> None:
    """Selection on training tasks must not replay the episodes their data came from."""
    seeds = {cfg.val_seed + i for i in range(cfg.val_episodes)}
    for t in tasks:
        recorded = getattr(t, "episode_seed", None)
        used = seeds & {int(s) for s in np.asarray([] if recorded is None else recorded, np.int64).ravel()}
        if used:
            raise ValueError(f"validation='train' rolls out {t.task_id} from seeds {sorted(used)[:3]}, which its "
                             f"dataset episodes started from; choose another val_seed (e.g. the default 2000000)")


def value_scale_from_tasks(tasks) -> float:
    """κ = 1 / mean |q*| over the given (training) tasks, so the value targets are of order one; 1.0 when
    the tasks have no finite q* (methods without a value head do not use it)."""
    q = [np.abs(np.asarray(t.q, np.float64)).ravel() for t in tasks]
    q = np.concatenate(q) if q else np.zeros(0)
    if q.size == 0 or not np.isfinite(q).all() or q.mean() <= 0:
        return 1.0
    return float(1.0 / q.mean())


def resolve_config(cfg: FitConfig, dataset, split=None) -> FitConfig:
    """Fill what depends on the data: the TD discount (the dataset's γ unless cfg.td_gamma is set) and the
    value scale κ (1 / mean |q*| over the split's train tasks unless cfg.value_scale is set)."""
    gamma = float(dataset.gamma) if cfg.td_gamma is None else float(cfg.td_gamma)
    if cfg.value_scale is not None:
        kappa = float(cfg.value_scale)
    else:
        split = split or dataset_split(cfg, dataset)
        train = set(split.train)
        kappa = value_scale_from_tasks([t for t in dataset.tasks if t.task_id in train])
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, gamma=gamma, value_scale=kappa))


def resolve_selection(cfg: FitConfig, dataset, split) -> str:
    """The selection rule actually used (see FitConfig.selection and training/loop.py)."""
    from hyperzero.envs import has_family

    has_env = has_family(dataset.family)
    if cfg.validation == "train":  # only rollouts select: the training samples themselves would reward overfitting
        if cfg.selection in ("auto", "return") and has_env:
            return "return"
        if cfg.selection == "auto" or cfg.selection == "last":
            return "last"
        raise ValueError(f"selection={cfg.selection!r} with validation='train' needs rollouts in the family's "
                         f"environment, and {dataset.family!r} has none; use selection='last' or validation=null")
    if cfg.selection == "auto":
        if not split.val:
            return "last"
        return "return" if has_env else "val_loss"
    if cfg.selection in ("return", "val_loss") and not split.val:
        raise ValueError(f"selection={cfg.selection!r} needs validation tasks, but split seed {cfg.seed} has none "
                         f"({len(split.train)} train, {len(split.test)} test tasks); raise val_fraction, add tasks, "
                         f"or use selection='last'")
    if cfg.selection == "return" and not has_env:
        raise ValueError(f"selection='return' rolls policies out in the environment, but the dataset's family "
                         f"{dataset.family!r} has none; use selection='val_loss' or 'last'")
    return cfg.selection


def make_val_rollouts(family: str, val_tasks, normalizer: ContextNormalizer, cfg: FitConfig, device):
    """model -> {"return": mean undiscounted return of the zero-shot policy over the val tasks, each rolled
    out for `cfg.val_episodes` full episodes from seeds val_seed + i; "return_std": over all episodes}."""
    seeds = [cfg.val_seed + i for i in range(cfg.val_episodes)]
    tasks = [(dict(t.context), torch.as_tensor(normalizer(t.context_vector), device=device)) for t in val_tasks]

    def score(model: Approximator) -> dict[str, float]:
        returns = np.stack([rollout_returns(family, ctx, numpy_policy(model.policy(vec)), seeds) for ctx, vec in tasks])
        return {"return": float(returns.mean()), "return_std": float(returns.std())}

    return score


def _check_resume(out: Path, resolved: FitConfig) -> None:
    if (out / "run_info.json").exists():
        old = read_json(out / "run_info.json")["config"]
        new = asdict(resolved)
        diff = sorted(k for k in new if k not in _RESUMABLE_CHANGES and _jsonable(old.get(k)) != _jsonable(new[k]))
        if diff:
            state = "a finished" if (out / DONE).exists() else "an unfinished"
            raise ValueError(f"{out} holds {state} fit with a different config (fields {diff}); "
                             "rerun with the same options to resume or skip it, or choose a new --out")


def fit(dataset, out_dir: str | Path, cfg: FitConfig | None = None, progress: bool = True,
        callbacks=()) -> Path:
    """Train `cfg.method` on the TRAIN tasks of split `cfg.seed` of `dataset` (a directory or a loaded
    RolloutDataset); select on the VAL tasks; never touch the TEST tasks. Resumes if interrupted.
    With `cfg.lr_sweep`, one fit per learning rate and the best on the VAL tasks is published."""
    from hyperzero.datasets.splits import Split

    cfg = cfg or FitConfig()
    cfg.check()
    ds = _load(dataset)
    out = Path(out_dir)
    split = dataset_split(cfg, ds)
    resolved = resolve_config(cfg, ds, split)
    selection = resolve_selection(cfg, ds, split)
    _check_resume(out, resolved)
    if (out / DONE).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    if (out / "split.json").exists() and Split.from_json(out / "split.json").test != split.test:
        raise ValueError(f"{out}/split.json differs from split seed {cfg.seed} of this dataset; use a new --out")
    split.to_json(out / "split.json")
    if cfg.lr_sweep:
        return _fit_lr_sweep(ds, out, cfg, resolved, split, selection, progress, callbacks)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)

    # --- split: train / val / test task ids (stored; the same on resumption) ---
    by_id = {t.task_id: t for t in ds.tasks}
    train_tasks = [by_id[i] for i in split.train]
    val_tasks = [by_id[i] for i in split.val]
    held_out = set(split.test) | set(split.val)
    assert not held_out & {t.task_id for t in train_tasks}, "test/val tasks in the training set"
    # the tasks selection rolls out: the val tasks, or (validation "train") training tasks on fresh episodes
    selection_tasks = [by_id[i] for i in selection_task_ids(cfg, ds, split)]
    assert not set(split.test) & {t.task_id for t in selection_tasks}, "test tasks in the selection"

    # --- model, data ---
    normalizer = ContextNormalizer.for_dataset(ds, cfg.context_norm)
    seed_everything(cfg.seed)
    model = build_method(cfg.method, len(ds.context_names), ds.obs_dim, ds.act_dim, resolved.model).to(device)
    if model.obs_norm is not None:  # training tasks only: val and test observations never shape the model
        model.obs_norm.set_statistics(*observation_statistics(t.obs for t in train_tasks))
    need_q = bool(getattr(model, "has_q", False))
    train_contexts = np.stack([normalizer(t.context_vector) for t in train_tasks])
    noise_std = context_noise_std(train_contexts, cfg.context_noise, cfg.context_noise_unit)
    sign_origins = _sign_origins(ds, normalizer) if noise_std.any() else None
    sampler = TaskSampler(train_tasks, train_contexts, cfg.tasks_per_batch, cfg.batch_size, cfg.seed, need_q, device,
                          forbidden=held_out, context_noise=noise_std, sign_origins=sign_origins)
    val_batch = validation_batch(val_tasks, np.stack([normalizer(t.context_vector) for t in val_tasks])
                                 if val_tasks else None, cfg.val_samples_per_task, cfg.seed + 1, need_q, device)
    # every fit with val tasks in a real environment records its final val return (selection "return": every eval)
    val_rollouts = (make_val_rollouts(ds.family, selection_tasks, normalizer, cfg, device)
                    if selection_tasks and _has_env(ds.family) else None)
    write_run_info(out, resolved, seeds={"split": cfg.seed, "init": cfg.seed, "sampler": cfg.seed,
                                         "validation_samples": cfg.seed + 1,
                                         "validation_episodes": [cfg.val_seed + i for i in range(cfg.val_episodes)]},
                   split=asdict(split), method=cfg.method, dataset=str(getattr(ds, "directory", "")),
                   family=ds.family, context_names=list(ds.context_names), normalizer=normalizer.state_dict(),
                   effective={"tasks_per_batch": sampler.k, "samples_per_task": sampler.per_task,
                              "batch_size": sampler.k * sampler.per_task, "td_gamma": resolved.model.gamma,
                              "value_scale": resolved.model.value_scale, "selection": selection,
                              "device": str(device), "torch_threads": torch.get_num_threads(),
                              "context_noise_std": dict(zip(ds.context_names, noise_std.tolist())),
                              "context_noise_keeps_sign": [n for n, o in zip(ds.context_names, sign_origins)
                                                           if o == o] if sign_origins is not None else []},
                   n_params=sum(p.numel() for p in model.parameters()))

    state = train_loop(model, sampler, resolved, out, val_batch, callbacks=callbacks, progress=progress,
                       val_rollouts=val_rollouts, selection=selection)

    # --- select (best validation checkpoint, or the final weights) and publish ---
    selected = "final"
    if selection != "last" and (out / BEST).exists():
        model.load_state_dict(load_torch(out / BEST, map_location=device, weights_only=True)["model"])
        selected = "best"
    if selected == "best":
        metric = "return" if selection == "return" else cfg.val_metric
        score = -state.best_val if higher_is_better(metric) else state.best_val
    else:
        scored = selection_score("last", state.last_val, cfg.val_metric)
        metric, score = scored if scored else (None, None)
    atomic_torch_save({"method": cfg.method, "ctx_dim": len(ds.context_names), "obs_dim": ds.obs_dim,
                       "act_dim": ds.act_dim, "config": _jsonable(asdict(resolved)), "family": ds.family,
                       "context_names": list(ds.context_names), "normalizer": normalizer.state_dict(),
                       "training_contexts": training_contexts(train_tasks, ds.context_names),
                       "split": asdict(split), "selected": selected, "selection": selection,
                       "step": state.best_step if selected == "best" else state.step,
                       "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, out / MODEL)
    atomic_write_json(out / DONE, {
        "finished": True, "method": cfg.method, "seed": cfg.seed, "steps": state.step, "lr": cfg.lr,
        "selection": selection, "selected": selected, "selected_step": state.best_step if selected == "best" else state.step,
        "selection_metric": metric, "selection_score": score,
        "best_step": state.best_step, "best_val": score if selected == "best" else None, "val_metric": cfg.val_metric,
        "final_val": state.last_val, "stopped_early": state.stopped_early, "train_seconds": state.train_seconds,
        "cpu_seconds": state.cpu_seconds,
        "val_seconds": state.val_seconds, "rollout_seconds": state.rollout_seconds,
        "validation_share": state.val_seconds / state.train_seconds if state.train_seconds > 0 else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return out


def training_contexts(train_tasks, context_names) -> dict:
    """What a fitted model knows of its training contexts: the features it does not vary, at their values, and
    each varied feature's (min, max) over the training tasks (TrainedModel.training_facts)."""
    contexts = [dict(t.context) for t in train_tasks]
    return {"fixed": {k: float(v) for k, v in contexts[0].items() if k not in context_names},
            "ranges": {n: [min(float(c[n]) for c in contexts), max(float(c[n]) for c in contexts)]
                       for n in context_names}}


def _sign_origins(ds, normalizer: ContextNormalizer) -> np.ndarray | None:
    """Per context feature, where 0 of a signed feature (a target speed) lies after normalisation; NaN for the
    others. None when the family is not registered here: then no feature is known to carry a sign."""
    from hyperzero.envs import get_family, has_family

    if not has_family(ds.family):
        return None
    features = get_family(ds.family).context_space.features
    signed = [bool(getattr(features.get(n), "nonzero", False)) for n in ds.context_names]
    zero = normalizer(np.zeros(len(ds.context_names)))
    return np.where(signed, zero, np.nan).astype(np.float32)


def _has_env(family: str) -> bool:
    """A registered family (shipped, or your own through a plugin) has an env to roll policies out in."""
    from hyperzero.envs import has_family

    return has_family(family)


def _fit_lr_sweep(ds, out: Path, cfg: FitConfig, resolved: FitConfig, split, selection: str, progress: bool,
                  callbacks) -> Path:
    """One complete fit per learning rate in `cfg.lr_sweep` (each resumable, in lr_sweep/lr_<v>/), scored on the
    VAL tasks by the selection metric of its selected model; the best is published in `out`. With
    `lr_sweep_steps` shorter than `steps`, the chosen lr is then fitted for the full `steps` (lr_sweep/final/),
    continuing its sweep fit rather than repeating its first steps."""
    if not selection_task_ids(cfg, ds, split):
        raise ValueError(f"lr_sweep chooses the learning rate on validation tasks, but split seed {cfg.seed} has none; "
                         f"raise val_fraction or add tasks, or drop lr_sweep and set lr")
    sweep_steps = cfg.lr_sweep_steps or cfg.steps
    sweep_info = dict(seeds={"split": cfg.seed}, split=asdict(split), method=cfg.method,
                      dataset=str(getattr(ds, "directory", "")), family=ds.family,
                      lr_sweep={"learning_rates": list(cfg.lr_sweep), "steps": sweep_steps, "selection": selection})
    write_run_info(out, resolved, **sweep_info)
    candidates = []
    for lr in cfg.lr_sweep:
        sub = out / "lr_sweep" / f"lr_{lr:g}"
        fit(ds, sub, dataclasses.replace(cfg, lr=float(lr), lr_sweep=[], lr_sweep_steps=0, steps=sweep_steps),
            progress=progress, callbacks=callbacks)
        done = read_json(sub / DONE)
        candidates.append({"lr": float(lr), "directory": sub.relative_to(out).as_posix(),
                           "metric": done["selection_metric"], "score": done["selection_score"],
                           "selected_step": done["selected_step"], "train_seconds": done["train_seconds"],
                           "cpu_seconds": done.get("cpu_seconds", 0.0)})
    scored = [c for c in candidates if c["score"] is not None]
    if not scored:
        raise ValueError(f"{out}: no sweep fit recorded a validation score; lr_sweep needs validation tasks")
    metric = scored[0]["metric"]
    best = (max if higher_is_better(metric) else min)(scored, key=lambda c: c["score"])
    winner = out / best["directory"]
    continued_from = None
    if sweep_steps != cfg.steps:
        final = out / "lr_sweep" / "final"
        _continue_candidate(winner, final, sweep_steps, cfg.eval_interval, best["directory"])
        fit(ds, final, dataclasses.replace(cfg, lr=best["lr"], lr_sweep=[], lr_sweep_steps=0),
            progress=progress, callbacks=callbacks)
        if (final / CONTINUED).exists():
            continued_from = read_json(final / CONTINUED)["directory"]
        winner = final
    record = {"metric": metric, "higher_is_better": higher_is_better(metric), "chosen_lr": best["lr"],
              "sweep_steps": sweep_steps, "refitted": sweep_steps != cfg.steps, "continued_from": continued_from,
              "candidates": candidates, "published_from": winner.relative_to(out).as_posix()}
    atomic_write_json(out / LR_SWEEP, record)
    # the published model's device and threads, here as well as in its sub-fit, where a reader would miss them
    write_run_info(out, resolved, **sweep_info, effective=read_json(winner / "run_info.json").get("effective"))
    for name in (MODEL, "progress.csv"):
        if (winner / name).exists():
            atomic_write_bytes(out / name, read_verified_bytes(winner / name))
    done = read_json(winner / DONE)
    # a continued final fit's clock includes its candidate's steps, which the candidates' sum already counts
    repeated = best if continued_from else {"train_seconds": 0.0, "cpu_seconds": 0.0}
    done.update({"lr": best["lr"], "lr_sweep": record,
                 "sweep_train_seconds": sum(c["train_seconds"] for c in candidates)
                 + (done["train_seconds"] - repeated["train_seconds"] if record["refitted"] else 0.0),
                 "sweep_cpu_seconds": sum(c["cpu_seconds"] for c in candidates)
                 + (done.get("cpu_seconds", 0.0) - repeated["cpu_seconds"] if record["refitted"] else 0.0)})
    atomic_write_json(out / DONE, done)
    return out


# a fit's resumable state: what `train_loop` and its curve logger pick up again (not its result or done.json)
_RESUMABLE_FILES = ("checkpoint.pt", "best.pt", "progress.csv", "split.json")


def _continue_candidate(candidate: Path, final: Path, sweep_steps: int, eval_interval: int, name: str) -> None:
    """Start the chosen lr's full-length fit from its sweep fit's end state instead of repeating those steps.

    The sweep fit took the same first `sweep_steps` steps (same seed, sampler and lr) and, when `eval_interval`
    divides `sweep_steps`, evaluated at the same steps, so continuing it gives the weights and selection of a
    fresh fit (tests/training/test_fit.py; with selection "val_loss" the curve also keeps the sweep fit's
    closing return). Otherwise, or when `final` already holds a fit, nothing is done and `final` is fitted from
    scratch or resumed. The state is assembled beside `final`, marked (CONTINUED), and renamed into place."""
    if final.exists() or sweep_steps % eval_interval or not (candidate / "checkpoint.pt").exists():
        return
    staging = final.with_name(final.name + ".continuing")
    shutil.rmtree(staging, ignore_errors=True)   # left by a run killed while assembling it
    staging.mkdir()
    for kept in _RESUMABLE_FILES:
        for file in (kept, kept + ".sha256"):
            if (candidate / file).exists():
                shutil.copy2(candidate / file, staging / file)
    if (candidate / "tb").is_dir():
        shutil.copytree(candidate / "tb", staging / "tb")
    atomic_write_json(staging / CONTINUED, {"directory": name, "step": sweep_steps})
    os.replace(staging, final)


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
        # contexts outside the family's nominal range are refused unless this (or the call's argument) allows them
        self.allow_extrapolation = False
        # warn (ExtrapolationWarning, once per feature) for a context outside the training tasks' range
        self.warn_outside_training = True
        self._facts: tuple[dict[str, float] | None, dict[str, tuple[float, float]] | None] | None = None
        self._warned: set[str] = set()

    @property
    def has_q(self) -> bool:
        return bool(getattr(self.model, "has_q", False))

    @property
    def is_meta(self) -> bool:
        return bool(getattr(self.model, "is_meta", False))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize_context(self, context, allow_extrapolation: bool | None = None) -> np.ndarray:
        """Context dict (or raw vector in context_names order) -> the model's input vector [d].

        The context is validated as the family's environments validate it, and more strictly
        (hyperzero.envs.validate_context with names): every feature of context_names must be given
        (none is defaulted), the family's other features may only be given at the value the model
        was trained at, and |speed| must be at least MIN_ABS_SPEED; each violation is a ValueError
        naming the feature. A value outside the range of the training tasks warns (ExtrapolationWarning)."""
        return self.normalizer(self.check_context(context, allow_extrapolation))

    def check_context(self, context, allow_extrapolation: bool | None = None) -> dict[str, float]:
        """The full context this model acts in for `context` (checked as `normalize_context` says)."""
        from hyperzero.envs import validate_context

        allow = self.allow_extrapolation if allow_extrapolation is None else allow_extrapolation
        fixed, _ = self.training_facts()
        ctx = validate_context(self.family, context, allow, names=list(self.context_names), fixed=fixed,
                               who=f"this model ({self.method})")
        self._warn_outside_training(ctx)
        return ctx

    def training_facts(self) -> tuple[dict[str, float] | None, dict[str, tuple[float, float]] | None]:
        """(fixed, ranges): the features outside context_names as its training tasks had them, and each
        context feature's (min, max) over the training tasks of its split.

        Read once from the manifest of the fit's dataset (named in run_info.json / inputs.json; a run's
        fits also find <run>/dataset/); (None, None) when no matching manifest is found, and then
        the family's defaults count as the fixed values and no range is checked.
        """
        if self._facts is None:
            self._facts = self._read_training_facts()
        return self._facts

    def set_training_facts(self, fixed: dict[str, float] | None,
                           ranges: dict[str, tuple[float, float]] | None = None) -> None:
        """Give the fixed context and training ranges directly (e.g. from a run already opened)."""
        self._facts = (None if fixed is None else dict(fixed), None if ranges is None else dict(ranges))

    def _read_training_facts(self):
        import json

        if self.fit_dir is None:
            return None, None
        fit_dir = Path(self.fit_dir)
        candidates = []
        for name in ("run_info.json", "inputs.json"):
            try:
                recorded = json.loads((fit_dir / name).read_text()).get("dataset")
            except (OSError, ValueError, AttributeError):
                continue
            if recorded:
                candidates.append(Path(recorded))
        candidates += [parent / "dataset" for parent in list(fit_dir.resolve().parents)[:5]]
        train = set(getattr(self.split, "train", None) or [])
        for directory in candidates:
            try:
                manifest = json.loads((directory / "manifest.json").read_text())
                if manifest["family"] != self.family or list(manifest["context_names"]) != list(self.context_names):
                    continue
                tasks = [t["context"] for t in manifest["tasks"] if t["task_id"] in train]
                if not tasks:
                    continue
                fixed = {k: float(v) for k, v in tasks[0].items() if k not in self.context_names}
                ranges = {n: (min(float(c[n]) for c in tasks), max(float(c[n]) for c in tasks))
                          for n in self.context_names}
                return fixed, ranges
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return None, None

    def _warn_outside_training(self, ctx: dict[str, float]) -> None:
        if not self.warn_outside_training:
            return
        _, ranges = self.training_facts()
        for n in self.context_names:
            if not ranges or n not in ranges or n in self._warned:
                continue
            lo, hi = ranges[n]
            if not lo <= float(ctx[n]) <= hi:
                import sys
                import warnings

                from hyperzero.envs.context import ExtrapolationWarning

                self._warned.add(n)
                level, frame = 1, sys._getframe(0)
                while frame is not None and frame.f_code.co_filename == __file__:  # point at the caller's line
                    frame, level = frame.f_back, level + 1
                warnings.warn(f"context feature {n!r} = {float(ctx[n]):g} is outside the range of the training tasks "
                              f"of this model ({self.method}, {self.fit_dir}): [{lo:g}, {hi:g}]; the policy "
                              f"extrapolates there (warned once per feature for this model)",
                              ExtrapolationWarning, stacklevel=level)

    def policy(self, context, allow_extrapolation: bool | None = None):
        """Zero-shot policy for a context dict: `.act(obs)` (numpy or torch), `.q(obs, act)` if has_q."""
        return self.model.policy(torch.as_tensor(self.normalize_context(context, allow_extrapolation),
                                                 device=self._device()))

    def adapt(self, context, transitions, allow_extrapolation: bool | None = None):
        """Few-shot policy (meta methods): `transitions` is a TaskBatch with K=1 or a dict of [N, ...]
        arrays `obs, action, reward, next_obs` (+ optional `terminated`, `q`) from the target task."""
        ctx = torch.as_tensor(self.normalize_context(context, allow_extrapolation), device=self._device())
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
    payload = load_torch(path, map_location="cpu", weights_only=True)
    config = payload["config"]
    if "obs_norm" not in (config.get("model") or {}):  # written before observation normalisation existed
        config = {**config, "model": {**(config.get("model") or {}), "obs_norm": False}}
    try:
        cfg = FitConfig.from_dict(config)
    except ValueError as err:
        raise ValueError(f"{path} holds fit settings this hyperzero version does not know ({err}); refit it "
                         "with this version, or load it with the version that wrote it") from None
    model = build_method(payload["method"], payload["ctx_dim"], payload["obs_dim"], payload["act_dim"], cfg.model)
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    split = Split(**{k: v for k, v in payload["split"].items() if k in Split.__dataclass_fields__})
    trained = TrainedModel(model, payload["method"], split, payload["context_names"], payload["family"],
                           ContextNormalizer.from_state_dict(payload["normalizer"]), cfg, Path(fit_dir))
    facts = payload.get("training_contexts")  # older models: read from their dataset's manifest when asked
    if facts:
        trained.set_training_facts(facts["fixed"], {n: tuple(r) for n, r in facts["ranges"].items()})
    return trained
