"""The context embedding shared by every method (paper §3).

    z = E(c):  Linear(d -> 64),  2 x ResBlock(64),
               Linear(64 -> 128), 2 x ResBlock(128),
               Linear(128 -> 256), 2 x ResBlock(256)        (no final activation)

    ResBlock(x) = x + Linear(ReLU(Linear(ReLU(x))))         (pre-activation, equal widths)

Initialisation (one for all methods, so "same architecture" really means the same network): every
Linear weight ~ U(±1/(2·sqrt(fan_in))) as in the authors' hypernetwork code; biases keep PyTorch's
default U(±1/sqrt(fan_in)). The authors' MLP baselines overwrote this with orthogonal weights; we
do not.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def embedding_init_(linear: nn.Linear) -> nn.Linear:
    """The authors' embedding init: weight ~ U(±1/(2·sqrt(fan_in))), PyTorch-default bias."""
    bound = 1.0 / (2.0 * math.sqrt(linear.in_features))
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


class ResBlock(nn.Module):
    """Pre-activation residual block: x + Linear(ReLU(Linear(ReLU(x))))."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = embedding_init_(nn.Linear(width, width))
        self.fc2 = embedding_init_(nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(torch.relu(x))))


class ContextEmbedding(nn.Module):
    """Residual MLP mapping a context vector [..., d] to an embedding z [..., dims[-1]]."""

    def __init__(self, ctx_dim: int, dims: Sequence[int] = (64, 128, 256), blocks_per_stage: int = 2):
        super().__init__()
        if ctx_dim < 1:
            raise ValueError(f"ctx_dim must be >= 1 (got {ctx_dim}); the context vector needs at least one feature")
        if len(dims) == 0 or any(int(w) < 1 for w in dims):
            raise ValueError(f"embedding dims must be a non-empty list of positive widths (got {tuple(dims)})")
        layers: list[nn.Module] = []
        width_in = ctx_dim
        for width in dims:
            layers.append(embedding_init_(nn.Linear(width_in, int(width))))
            layers.extend(ResBlock(int(width)) for _ in range(blocks_per_stage))
            width_in = int(width)
        self.net = nn.Sequential(*layers)
        self.ctx_dim = ctx_dim
        self.out_dim = width_in

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if context.shape[-1] != self.ctx_dim:
            raise ValueError(f"context has {context.shape[-1]} features but the embedding expects {self.ctx_dim}; "
                             "pass the vector of the dataset's context_names")
        return self.net(context)
