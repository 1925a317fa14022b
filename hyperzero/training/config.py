"""Every knob of a fit, in one dataclass (defaults: the paper's optimiser, our leak-free protocol and
selection by return on validation tasks; docs/methods.md "Training" explains each choice)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from hyperzero.models.config import ModelConfig
from hyperzero.utils.typed import refuse_unknown_keys


@dataclass
class FitConfig:
    method: str = "hyperzero"            # a name in hyperzero.models.registry.METHODS
    seed: int = 0                        # split seed k (make_split) and the init / sampling seed of this fit
    protocol: Literal["paper", "hypogen"] = "paper"  # paper: 15 % test tasks (at least min_test_tasks); hypogen: 80 %
    test_fraction: Optional[float] = None  # fraction of tasks held out for test; None = the protocol's (0.15 / 0.80)
    min_test_tasks: int = 3              # hold out at least this many test tasks while >= 2 tasks remain to train on
    val_fraction: float = 0.15           # fraction of the non-test tasks held out for validation (never test tasks)
    validation: Optional[Literal["train"]] = None  # None: select on val tasks carved out by val_fraction; "train":
    #   every non-test task trains and selection rolls out training tasks on fresh val_seed episodes
    val_train_tasks: Optional[int] = None  # validation "train": training tasks rolled out per evaluation, spread over
    #   the grid; None = all of them
    tasks_per_batch: int = 8             # K: tasks per grouped batch (capped at the number of train tasks)
    batch_size: int = 512                # total samples per gradient step, batch_size // K from each task
    lr: float = 1e-4                     # Adam learning rate (authors: 1e-4, default betas, no schedule)
    lr_sweep: list[float] = field(default_factory=list)  # fit once per lr, keep the best on the val tasks; [] = lr
    lr_sweep_steps: int = 0              # steps per sweep fit; 0 = `steps` (the winner is reused), else it continues
    steps: int = 100_000                 # gradient steps; the same budget for every method by default
    eval_interval: int = 1_000           # steps between validation evaluations (loss and, for "return", rollouts)
    selection: Literal["auto", "return", "val_loss", "last"] = "auto"  # model.pt = best val return | val_metric | last
    val_episodes: int = 2                # full-length episodes per val task at each rollout evaluation
    val_seed: int = 2_000_000            # val rollout episode i starts from seed val_seed + i (not a data/eval seed)
    val_samples_per_task: int = 2_048    # fixed validation samples drawn once from each val task
    val_metric: str = "zero_shot_action_loss"  # selection="val_loss" metric: zero-shot action MSE on val tasks
    patience: int = 0                    # stop after this many evals without improvement; 0 = never (equal budgets)
    context_norm: Literal["bounds", "raw"] = "bounds"  # bounds: the family's nominal bounds -> [-1, 1]; raw: as is
    context_noise: float = 0.0           # std of Gaussian noise on each training batch's (normalised) contexts, in
    #   context_noise_unit; 0 = none. A signed feature (a target speed) keeps its sign: noise across 0 is reflected
    context_noise_unit: Literal["spacing", "bounds"] = "spacing"  # spacing: per feature, x the median distance between
    #   neighbouring training values (none on a feature the training tasks share); bounds: [-1, 1] = the bounds
    td_gamma: Optional[float] = None     # TD discount; None = the dataset's γ (experts'); 1.0 = the authors' bug
    value_scale: Optional[float] = None  # κ on q* and r in value/TD losses; None = 1/mean|q*| (train tasks); 1 = authors'
    device: str = "auto"                 # auto | cpu | cuda[:i]
    checkpoint_interval: int = 5_000     # steps between resumable checkpoints (checkpoint.pt)
    log_interval: int = 200              # steps between training-curve rows (means over the interval)
    num_threads: int = 0                 # torch intra-op threads; 0 = leave torch's default
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture and loss weights

    def check(self) -> None:
        """Raise ValueError naming the bad field and how to fix it."""
        from hyperzero.models.registry import METHODS
        from hyperzero.utils.typed import check_fields

        check_fields(self)  # types first (e.g. steps="10" is refused), then ranges

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.protocol not in ("paper", "hypogen"):
            raise ValueError(f"protocol must be 'paper' or 'hypogen' (got {self.protocol!r})")
        if self.selection not in ("auto", "return", "val_loss", "last"):
            raise ValueError(f"selection must be auto, return, val_loss or last (got {self.selection!r})")
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1) or None for the protocol's (got {self.test_fraction})")
        if int(self.min_test_tasks) < 1:
            raise ValueError(f"min_test_tasks must be >= 1 (got {self.min_test_tasks})")
        if not isinstance(self.lr_sweep, (list, tuple)) or not all(
                isinstance(v, (int, float)) and v > 0 for v in self.lr_sweep):
            raise ValueError(f"lr_sweep must be a list of positive learning rates, e.g. [0.0003, 0.001] "
                             f"(got {self.lr_sweep!r}); [] disables the sweep")
        if len(set(self.lr_sweep)) != len(self.lr_sweep):
            raise ValueError(f"lr_sweep lists a learning rate twice ({self.lr_sweep})")
        if self.lr_sweep_steps < 0:
            raise ValueError(f"lr_sweep_steps must be >= 0 (0 = the full `steps`), got {self.lr_sweep_steps}")
        if self.value_scale is not None and not self.value_scale > 0:
            raise ValueError(f"value_scale must be > 0, or None for 1 / mean |q*| (got {self.value_scale})")
        if not 0.0 <= self.context_noise < float("inf"):
            raise ValueError(f"context_noise must be a finite std >= 0 (0 = no noise), got {self.context_noise}")
        if self.context_noise_unit not in ("spacing", "bounds"):
            raise ValueError(f"context_noise_unit must be 'spacing' (x the training tasks' spacing per feature) or "
                             f"'bounds' (normalised units) (got {self.context_noise_unit!r})")
        if self.context_norm not in ("bounds", "raw"):
            raise ValueError(f"context_norm must be 'bounds' or 'raw' (got {self.context_norm!r})")
        if self.validation not in (None, "train"):
            raise ValueError(f"validation must be null (val tasks carved out by val_fraction) or 'train' (select on "
                             f"the training tasks, fresh episodes) (got {self.validation!r})")
        if self.val_train_tasks is not None and self.val_train_tasks < 1:
            raise ValueError(f"val_train_tasks must be >= 1, or null for every training task (got "
                             f"{self.val_train_tasks})")
        if self.validation == "train" and self.selection == "val_loss":
            raise ValueError("selection='val_loss' with validation='train' would select on the training samples "
                             "themselves; use selection='return' (or auto), or validation=null")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1) (got {self.val_fraction})")
        for name in ("tasks_per_batch", "batch_size", "steps", "eval_interval", "checkpoint_interval",
                     "log_interval", "val_samples_per_task", "val_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.batch_size < self.tasks_per_batch:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= tasks_per_batch ({self.tasks_per_batch}): "
                             "each task contributes batch_size // tasks_per_batch samples")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (got {self.lr})")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0 disables early stopping), got {self.patience}")
        if self.td_gamma is not None and not 0.0 <= self.td_gamma <= 1.0:
            raise ValueError(f"td_gamma must be in [0, 1] or None for the dataset's γ (got {self.td_gamma})")

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        """A FitConfig from plain values (a config section, or a saved model's config); an unknown key is an
        error naming it, never silently dropped (a misspelt `stpes` would otherwise fit the default budget)."""
        d = dict(d)
        model = dict(d.pop("model", {}) or {})
        refuse_unknown_keys(d, cls.__dataclass_fields__, noun="fit setting(s)")
        refuse_unknown_keys([f"model.{k}" for k in model], [f"model.{k}" for k in ModelConfig.__dataclass_fields__],
                            noun="fit setting(s)")
        if "embed_dims" in model:
            model["embed_dims"] = tuple(model["embed_dims"])
        if "lr_sweep" in d:
            d["lr_sweep"] = [float(v) for v in d["lr_sweep"] or []]
        return cls(**d, model=ModelConfig(**model))
