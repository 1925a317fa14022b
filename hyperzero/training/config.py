"""Every knob of a fit, in one dataclass (defaults: the paper's optimiser, our leak-free protocol)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from hyperzero.models.config import ModelConfig


@dataclass
class FitConfig:
    method: str = "hyperzero"            # a name in hyperzero.models.registry.METHODS
    seed: int = 0                        # split seed k (make_split) and the init / sampling seed of this fit
    protocol: Literal["paper", "hypogen"] = "paper"  # paper: 15 % test tasks; hypogen: 80 % test tasks
    val_fraction: float = 0.15           # fraction of the non-test tasks held out for validation (never test tasks)
    tasks_per_batch: int = 8             # K: tasks per grouped batch (capped at the number of train tasks)
    batch_size: int = 512                # total samples per gradient step, batch_size // K from each task
    lr: float = 1e-4                     # Adam learning rate (authors: 1e-4, default betas, no schedule)
    steps: int = 100_000                 # gradient steps; the same budget for every method by default
    eval_interval: int = 1_000           # steps between validation-loss evaluations
    val_samples_per_task: int = 2_048    # fixed validation samples drawn once from each val task
    val_metric: str = "action_loss"      # validation metric for best.pt and early stopping; action MSE is what
                                         # every method reports and what acting depends on (total losses differ by method)
    patience: int = 0                    # stop after this many evals without improvement; 0 = never (equal budgets)
    context_norm: Literal["bounds", "raw"] = "bounds"  # bounds: the family's nominal bounds -> [-1, 1]; raw: as is
    td_gamma: Optional[float] = None     # TD discount; None = the dataset's γ (experts'); 1.0 = the authors' bug
    device: str = "auto"                 # auto | cpu | cuda[:i]
    checkpoint_interval: int = 5_000     # steps between resumable checkpoints (checkpoint.pt)
    log_interval: int = 200              # steps between training-curve rows (means over the interval)
    num_threads: int = 0                 # torch intra-op threads; 0 = leave torch's default
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture and loss weights

    def check(self) -> None:
        """Raise ValueError naming the bad field and how to fix it."""
        from hyperzero.models.registry import METHODS

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.protocol not in ("paper", "hypogen"):
            raise ValueError(f"protocol must be 'paper' or 'hypogen' (got {self.protocol!r})")
        if self.context_norm not in ("bounds", "raw"):
            raise ValueError(f"context_norm must be 'bounds' or 'raw' (got {self.context_norm!r})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1) (got {self.val_fraction})")
        for name in ("tasks_per_batch", "batch_size", "steps", "eval_interval", "checkpoint_interval",
                     "log_interval", "val_samples_per_task"):
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
        d = dict(d)
        model = dict(d.pop("model", {}) or {})
        if "embed_dims" in model:
            model["embed_dims"] = tuple(model["embed_dims"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known}, model=ModelConfig(**model))
