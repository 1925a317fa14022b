"""The interface every approximator implements, so one training loop serves them all.

Batches are grouped by task: K tasks per batch, B samples from each. Generating a policy once per
task (not once per sample) is what makes hypernetwork training fast on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass
class TaskBatch:
    """Transitions from K tasks, B per task. All tensors float32 except where noted."""

    context: torch.Tensor      # [K, d]   context vector of each task (normalised as the fit config says)
    obs: torch.Tensor          # [K, B, S]
    action: torch.Tensor       # [K, B, A] the expert's action a*
    reward: torch.Tensor       # [K, B]
    next_obs: torch.Tensor     # [K, B, S]
    terminated: torch.Tensor   # [K, B]   1.0 where the episode truly ended (never for time limits)
    q: torch.Tensor            # [K, B]   the expert's Q1(s, a*)

    def to(self, device) -> "TaskBatch":
        return TaskBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def num_tasks(self) -> int:
        return self.context.shape[0]


class ContextPolicy(Protocol):
    """A policy for one fixed context: generate once, then act at plain-MLP speed."""

    def act(self, obs: torch.Tensor) -> torch.Tensor:  # [B, S] -> [B, A] in [-1, 1]
        ...


class Approximator(nn.Module):
    """Base class of every method. Subclasses set `has_q` and `is_meta`, and meta methods `zero_shot_metric`."""

    has_q: bool = False
    is_meta: bool = False
    # the metric of `loss` / `validation_loss` that measures the ZERO-SHOT policy (`policy(context)`), which
    # model selection on validation loss uses; meta methods override it (their action_loss is after adaptation)
    zero_shot_metric: str = "action_loss"

    def loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on one grouped batch, and scalar metrics for the curves."""
        raise NotImplementedError

    @torch.no_grad()
    def policy(self, context: torch.Tensor) -> ContextPolicy:
        """Zero-shot policy for one context vector [d]."""
        raise NotImplementedError

    def adapt(self, context: torch.Tensor, support: TaskBatch) -> ContextPolicy:
        """Few-shot policy from k transitions of the target task (meta methods only)."""
        raise NotImplementedError(f"{type(self).__name__} has no few-shot adaptation")
