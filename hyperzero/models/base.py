"""The interface every approximator implements, so one training loop serves them all.

Batches are grouped by task: K tasks per batch, B samples from each. Generating a policy once per
task (not once per sample) is what makes hypernetwork training fast on a CPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np
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


class ObsNormalizer(nn.Module):
    """s -> (s - mean) / std per observation feature, with statistics of the fit's training data.

    Raw dm_control observations mix scales (walker: joint velocities of order 10 beside orientations of
    order 1). The statistics are buffers, so they are saved and restored with the model's weights; a
    generated policy does not normalise at all: `fold` moves the map into its first layer, so exported npz
    and TorchScript policies act on raw observations and stay one plain MLP.
    """

    MIN_STD = 1e-2  # a feature (nearly) constant in the data is scaled by at most 1/MIN_STD

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    @torch.no_grad()
    def set_statistics(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"observation statistics have {mean.numel()} / {std.numel()} features; the model "
                             f"expects {self.mean.numel()}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("observation statistics are not finite; the training data holds NaN or inf observations")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(self.MIN_STD))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std

    def fold(self, w1: torch.Tensor, b1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer weights [..., H, I] and bias [..., H] acting on normalised s (the first S of I inputs;
        the rest, e.g. the action of a Q-network, pass unchanged) -> the same layer acting on raw s:
        W (s - m) / σ + b = (W / σ) s + (b - (W / σ) m)."""
        s = self.mean.numel()
        w_obs = w1[..., :s] / self.std
        return torch.cat([w_obs, w1[..., s:]], dim=-1), b1 - w_obs @ self.mean

    def normalized(self, batch: "TaskBatch") -> "TaskBatch":
        return dataclasses.replace(batch, obs=self(batch.obs), next_obs=self(batch.next_obs))


def observation_statistics(observations) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64) over arrays of observations [..., S] (e.g. every training task's)."""
    total, total_sq, n = 0.0, 0.0, 0
    for obs in observations:
        flat = np.asarray(obs, dtype=np.float64).reshape(-1, np.shape(obs)[-1])
        total, total_sq, n = total + flat.sum(0), total_sq + np.square(flat).sum(0), n + flat.shape[0]
    if n == 0:
        raise ValueError("no observations to compute normalisation statistics from")
    mean = total / n
    return mean, np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0))


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

    def init_obs_norm(self, obs_dim: int, enabled: bool) -> None:
        """Subclasses call this in __init__: `self.obs_norm` is an ObsNormalizer (ModelConfig.obs_norm) or None.
        (Not a class attribute: nn.Module keeps submodules in `_modules`, which a class attribute would shadow.)"""
        self.obs_norm = ObsNormalizer(obs_dim) if enabled else None

    def normalized(self, batch: TaskBatch) -> TaskBatch:
        """`batch` with obs and next_obs normalised, when the model normalises observations."""
        norm = getattr(self, "obs_norm", None)
        return batch if norm is None else norm.normalized(batch)

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
