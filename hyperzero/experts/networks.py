"""Stacked MLPs: N independent networks whose weights are stored as [N, in, out] and run with one baddbmm.

The layers every solver builds on, and the twin critic TD3 and SAC share; each solver's own networks (TD3's
deterministic actor, SAC's Gaussian one) are in its package, hyperzero/experts/solvers/<name>/networks.py.

N = 1 is the same code path. Each member is initialised from its own torch.Generator, so member i of
an ensemble gets exactly the weights a solo network with the same seed gets.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn


class StackedLinear(nn.Module):
    """y[n] = x[n] @ W[n] + b[n] for n in range(N); x: [N, B, in] -> [N, B, out]."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, out_dim))

    def reset_member(self, i: int, generator: torch.Generator, gain: float = 1.0) -> None:
        """Orthogonal weights, zero bias (authors' init), drawn in nn.Linear's [out, in] layout."""
        w = torch.empty(self.weight.shape[2], self.weight.shape[1])
        nn.init.orthogonal_(w, gain=gain, generator=generator)
        with torch.no_grad():
            self.weight[i].copy_(w.T)
            self.bias[i].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class StackedLayerNorm(nn.Module):
    """LayerNorm over the feature axis with a per-member affine: x [N, B, D] -> [N, B, D]."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))

    def reset_member(self, i: int) -> None:
        with torch.no_grad():
            self.weight[i].fill_(1.0)
            self.bias[i].zero_()

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, x.shape[-1:]) * self.weight[members] + self.bias[members]


class StackedObsNorm(nn.Module):
    """Running mean/variance normalisation of each member's observations (SimBa's RSNorm): x [N, B, S] -> z-scores,
    clipped to +-`clip`. The statistics are buffers, saved with the network and changed only by `observe`.

    Starts as the identity (mean 0, variance 1, a tiny prior count, as SB3's VecNormalize), so a network built
    with it and never shown an observation acts as one built without it.
    """

    def __init__(self, n: int, dim: int, clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(n, 1, dim))
        self.register_buffer("var", torch.ones(n, 1, dim))
        self.register_buffer("count", torch.full((n, 1, 1), 1e-4))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Fold one batch x [N, B, S] into the running statistics (Chan et al.'s parallel update, per member)."""
        batch_mean, batch_var, b = x.mean(dim=1, keepdim=True), x.var(dim=1, unbiased=False, keepdim=True), x.shape[1]
        delta, total = batch_mean - self.mean, self.count + b
        self.mean += delta * b / total
        self.var.copy_((self.var * self.count + batch_var * b + delta ** 2 * self.count * b / total) / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        z = (x - self.mean[members]) * torch.rsqrt(self.var[members] + 1e-8)
        return z.clamp(-self.clip, self.clip)


class StackedMLP(nn.Module):
    """ReLU MLP over N stacked members. `fp32_output` runs the last layer outside autocast.

    `layer_norm` normalises every hidden pre-activation (Linear -> LayerNorm -> ReLU): it bounds the critic's
    features, which keeps TD targets from running away early in training (as in DroQ, SimBa, BRO).
    """

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], out_dim: int, fp32_output: bool = False,
                 layer_norm: bool = False):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(StackedLayerNorm(n, h) for h in hidden) if layer_norm else None
        self.fp32_output = fp32_output

    def reset_member(self, i: int, generator: torch.Generator) -> None:
        for layer in self.layers:
            layer.reset_member(i, generator)
        for norm in self.norms or ():
            norm.reset_member(i)

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        """`members` runs a subset of the stack (e.g. every second one) without copying the others."""
        for k, layer in enumerate(self.layers[:-1]):
            x = torch.baddbmm(layer.bias[members], x, layer.weight[members])
            if self.norms is not None:
                x = self.norms[k](x, members)
            x = torch.relu(x)
        last = self.layers[-1]
        ctx = (torch.autocast(x.device.type, enabled=False)
               if self.fp32_output and torch.is_autocast_enabled(x.device.type) else contextlib.nullcontext())
        with ctx:  # Q-values reach ~100 in DMC, where bf16 resolves only ~0.4: keep the output layer in fp32.
            if self.fp32_output:
                x = x.float()
            return torch.baddbmm(last.bias[members], x, last.weight[members])


class EnsembleTwinCritic(nn.Module):
    """Twin Q-functions for N members stored as one 2N stack, member-major (Q1 of member i at 2i, Q2 at 2i+1).

    forward: obs [N, B, S], act [N, B, A] -> q [N, 2, B] (fp32).
    """

    def __init__(self, n: int, obs_dim: int, act_dim: int, hidden: Sequence[int], layer_norm: bool = False,
                 obs_norm: bool = False):
        super().__init__()
        self.n = n
        # one row of statistics per head (2N), like every other tensor of the critic, so member i's rows are 2i, 2i+1
        self.obs_norm = StackedObsNorm(2 * n, obs_dim) if obs_norm else None
        self.net = StackedMLP(2 * n, obs_dim + act_dim, hidden, 1, fp32_output=True, layer_norm=layer_norm)

    def reset_member(self, i: int, generator: torch.Generator) -> None:
        self.net.reset_member(2 * i, generator)
        self.net.reset_member(2 * i + 1, generator)

    def _inputs(self, obs: torch.Tensor, act: torch.Tensor, members: slice) -> torch.Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs, members)
        return torch.cat([obs, act], dim=-1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = self._inputs(obs.repeat_interleave(2, dim=0), act.repeat_interleave(2, dim=0), slice(None))  # [2N, B, S+A]
        q = self.net(x).squeeze(-1)  # [2N, B]
        return q.view(self.n, 2, -1)

    def q1(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q1 only (the actor loss and the dataset's q*): [N, B]."""
        heads = slice(0, None, 2)
        return self.net(self._inputs(obs, act, heads), members=heads).squeeze(-1)
