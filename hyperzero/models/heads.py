"""Per-task one-hidden-layer networks, the loss shared by HyperZero and the MLP baselines, and the
generated policy that acts at plain-MLP speed.

Both HyperZero and the context-conditioned MLPs reduce, for a fixed context c, to the same pair of
small networks (paper §3.2):

    π̂_c(s)    = tanh(W2 · ReLU(W1 s + b1) + b2)            S -> hidden -> A
    Q̂_c(s, a) = V2 · ReLU(V1 [s; a] + c1) + c2              S+A -> hidden -> 1

HyperZero *generates* all of W1, b1, W2, b2 (and V1, c1, V2, c2) from the context embedding z.
The context MLP uses fixed weights on [z; s]; its first layer splits as W_z z + W_s s + b, so its
per-task network is W1 = W_s (shared) and b1 = W_z z + b (context-dependent). Either way a model
returns `TaskNets` with one weight set per task ([K, ...] tensors), applied to [K, B, ...] batches
with batched matmul. Generating once per task instead of once per sample is ~4x faster on a CPU
(docs/benchmarks-training.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from hyperzero.models.base import Approximator, TaskBatch
from hyperzero.models.config import ModelConfig


@dataclass
class MLPWeights:
    """Weights of K one-hidden-layer networks: x [K,B,I] -> out [K,B,O]. Shared weights may be expanded views."""

    w1: torch.Tensor  # [K, H, I]
    b1: torch.Tensor  # [K, H]
    w2: torch.Tensor  # [K, O, H]
    b2: torch.Tensor  # [K, O]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.baddbmm(self.b1.unsqueeze(1), x, self.w1.transpose(1, 2)))
        return torch.baddbmm(self.b2.unsqueeze(1), h, self.w2.transpose(1, 2))

    def select(self, k: int) -> "MLPWeights":
        return MLPWeights(*(t[k:k + 1].detach().clone() for t in (self.w1, self.b1, self.w2, self.b2)))


@dataclass
class TaskNets:
    """The policy (and Q, when the method has one) of K tasks."""

    pi: MLPWeights
    q: Optional[MLPWeights] = None

    def act(self, obs: torch.Tensor) -> torch.Tensor:           # [K,B,S] -> [K,B,A]
        return torch.tanh(self.pi(obs))

    def value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # -> [K,B]
        if self.q is None:
            raise ValueError("this method has no Q-function; use a method with a value head (e.g. hyperzero)")
        return self.q(torch.cat([obs, action], dim=-1)).squeeze(-1)


class GeneratingApproximator(Approximator):
    """Base of HyperZero and the context MLPs: subclasses implement `generate(context [K,d]) -> TaskNets`.

    Loss on a grouped batch (the paper's Eq. 4-5, with the experts' discount):
        L = MSE(π̂(s), a*) + w_v · MSE(Q̂(s, a*), κ q*)
            + w_td · MSE(κ q*, κ r + γ · (1 - terminated) · Q̂(s', stopgrad(π̂(s'))))
    The gradient of the TD term flows through Q̂(s', ·) (Q weights and the embedding); only the next
    action is stop-gradient. γ is `cfg.gamma` (the fit sets it to the dataset's γ; 1.0 reproduces
    the authors' code, which used the env discount 1.0 by mistake). κ = `cfg.value_scale` scales q*
    and r together, so the Bellman relation q* = r + γ q*' holds for κ q* as well; Q̂ learns κ q*
    and the generated policy's `q()` divides by κ (its last Q layer is scaled by 1/κ).
    """

    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig, use_q: bool, use_td: bool):
        super().__init__()
        if use_td and not use_q:
            raise ValueError("use_td=True needs use_q=True: the TD loss is a loss on the generated Q-function")
        for name, v in (("ctx_dim", ctx_dim), ("obs_dim", obs_dim), ("act_dim", act_dim), ("hidden_dim", cfg.hidden_dim)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1 (got {v})")
        if not 0.0 <= cfg.gamma <= 1.0:
            raise ValueError(f"ModelConfig.gamma must be in [0, 1] (got {cfg.gamma}); use the experts' discount, e.g. 0.99")
        if not cfg.value_scale > 0:
            raise ValueError(f"ModelConfig.value_scale must be > 0 (got {cfg.value_scale}); 1.0 leaves q* unscaled")
        self.ctx_dim, self.obs_dim, self.act_dim, self.cfg = ctx_dim, obs_dim, act_dim, cfg
        self.use_q, self.use_td = use_q, use_td
        self.has_q = use_q
        self.init_obs_norm(obs_dim, cfg.obs_norm)

    def generate(self, context: torch.Tensor) -> TaskNets:
        raise NotImplementedError

    def loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        batch = self.normalized(batch)
        nets = self.generate(batch.context)
        action_loss = (nets.act(batch.obs) - batch.action).pow(2).mean()
        total = action_loss
        metrics = {"action_loss": action_loss.item()}
        if self.use_q:
            value_loss = (nets.value(batch.obs, batch.action) - self.cfg.value_scale * batch.q).pow(2).mean()
            total = total + self.cfg.value_weight * value_loss
            metrics["value_loss"] = value_loss.item()
        if self.use_td:
            td_loss = self.td_loss(nets, batch)
            total = total + self.cfg.td_weight * td_loss
            metrics["td_loss"] = td_loss.item()
        metrics["loss"] = total.item()
        return total, metrics

    def td_loss(self, nets: TaskNets, batch: TaskBatch) -> torch.Tensor:
        with torch.no_grad():  # stop-gradient on ā = π̂(s') only (no graph is built for it)
            next_action = nets.act(batch.next_obs)
        kappa = self.cfg.value_scale
        target = kappa * batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * nets.value(batch.next_obs, next_action)
        return (kappa * batch.q - target).pow(2).mean()

    @torch.no_grad()
    def policy(self, context: torch.Tensor) -> "GeneratedPolicy":
        """Generate the networks of one (normalised) context vector [d] once; act without the generator."""
        context = torch.as_tensor(context, dtype=torch.float32, device=_device_of(self)).reshape(1, -1)
        nets = self.generate(context)
        pi, q = nets.pi.select(0), None
        if nets.q is not None:  # fold 1/κ into the last Q layer: the policy's q() is in the experts' units
            q = nets.q.select(0)
            q = MLPWeights(q.w1, q.b1, q.w2 / self.cfg.value_scale, q.b2 / self.cfg.value_scale)
        if self.obs_norm is not None:  # and the observation normalisation into the first layers
            pi = MLPWeights(*self.obs_norm.fold(pi.w1, pi.b1), pi.w2, pi.b2)
            q = MLPWeights(*self.obs_norm.fold(q.w1, q.b1), q.w2, q.b2) if q is not None else None
        return GeneratedPolicy(pi, q)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def per_sample(batch: TaskBatch) -> TaskBatch:
    """Regroup [K,B] as [K·B,1]: one generated network per sample (the authors' scheme; benchmarks only)."""
    k, b = batch.obs.shape[:2]
    return TaskBatch(
        context=batch.context.repeat_interleave(b, dim=0),
        **{f: getattr(batch, f).reshape(k * b, 1, *getattr(batch, f).shape[2:])
           for f in ("obs", "action", "reward", "next_obs", "terminated", "q")},
    )


class GeneratedPolicy:
    """A policy (and Q̂ if the method has one) for one fixed context, at plain-MLP speed.

    `act(obs)` takes [S] or [B,S] as numpy or torch and returns the same kind; `q(obs, action)`
    returns Q̂ (or raises if the method has none). `save_npz(path)` / `save_torchscript(path)` export.
    """

    def __init__(self, pi: MLPWeights, q: Optional[MLPWeights] = None):
        self._pi = [t[0].contiguous() for t in (pi.w1, pi.b1, pi.w2, pi.b2)]
        self._q = [t[0].contiguous() for t in (q.w1, q.b1, q.w2, q.b2)] if q is not None else None
        self.obs_dim = self._pi[0].shape[1]
        self.act_dim = self._pi[2].shape[0]
        self._numpy = None  # numpy copy of the weights, built on first numpy call (numpy in/out skips torch)

    @property
    def has_q(self) -> bool:
        return self._q is not None

    @staticmethod
    def _mlp(x: torch.Tensor, w: list[torch.Tensor]) -> torch.Tensor:
        return torch.addmm(w[3], torch.relu(torch.addmm(w[1], x, w[0].t())), w[2].t())

    def _as_tensor(self, x, width: int, what: str):
        is_numpy = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, dtype=np.float32) if is_numpy else x, dtype=torch.float32,
                            device=self._pi[0].device)
        if t.shape[-1] != width:
            raise ValueError(f"{what} has {t.shape[-1]} features but this policy expects {width}")
        return t, is_numpy

    def _numpy_policy(self):
        if self._numpy is None:
            from hyperzero.models.export import NumpyPolicy

            self._numpy = NumpyPolicy(self.numpy_weights())
        return self._numpy

    @torch.no_grad()
    def act(self, obs):
        if not isinstance(obs, torch.Tensor):  # numpy in/out: plain numpy matmuls (~5x lower latency)
            return self._numpy_policy().act(obs)
        x, is_numpy = self._as_tensor(obs, self.obs_dim, "obs")
        single = x.dim() == 1
        a = torch.tanh(self._mlp(x.reshape(1, -1) if single else x, self._pi))
        a = a[0] if single else a
        return a.cpu().numpy() if is_numpy else a

    @torch.no_grad()
    def q(self, obs, action):
        if self._q is None:
            raise ValueError("this method has no Q-function; use e.g. hyperzero or mlp_uvfa for Q̂(s, a)")
        x, is_numpy = self._as_tensor(obs, self.obs_dim, "obs")
        a, _ = self._as_tensor(action, self.act_dim, "action")
        single = x.dim() == 1
        xa = torch.cat([x.reshape(1, -1), a.reshape(1, -1)], -1) if single else torch.cat([x, a], -1)
        v = self._mlp(xa, self._q)[:, 0]
        v = v[0] if single else v
        return v.cpu().numpy() if is_numpy else v

    def numpy_weights(self) -> dict[str, np.ndarray]:
        out = {f"pi_{n}": t.cpu().numpy() for n, t in zip(("w1", "b1", "w2", "b2"), self._pi)}
        if self._q is not None:
            out.update({f"q_{n}": t.cpu().numpy() for n, t in zip(("w1", "b1", "w2", "b2"), self._q)})
        return out

    def save_npz(self, path: str | Path, **metadata) -> Path:
        """Weights for `hyperzero.models.export.NumpyPolicy` (pure numpy, no torch needed to act)."""
        from hyperzero.models.export import save_policy_npz

        return save_policy_npz(path, self.numpy_weights(), **metadata)

    def save_torchscript(self, path: str | Path) -> Path:
        from hyperzero.models.export import save_torchscript

        return save_torchscript(path, self.numpy_weights())


# ---------------------------------------------------------------- hypernetwork heads
class WeightHead(nn.Module):
    """Generates one target layer's weight [K,out,in] and bias [K,out] from z [K,dz] (two Linears)."""

    def __init__(self, z_dim: int, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Linear(z_dim, in_features * out_features)
        self.bias = nn.Linear(z_dim, out_features)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight(z).view(-1, self.out_features, self.in_features), self.bias(z)

    def init_uniform_(self, bound: float) -> None:
        """The authors' init: head weights ~ U(±bound) (0.05 first layer, 0.008 last), head biases 0."""
        nn.init.uniform_(self.weight.weight, -bound, bound)
        nn.init.uniform_(self.bias.weight, -bound, bound)
        nn.init.zeros_(self.weight.bias)
        nn.init.zeros_(self.bias.bias)

    def init_hyperfan_in_(self, z_second_moment: float, gain: float) -> None:
        """Hyperfan-in (Chang, Sahni & Kim, ICLR 2020), uniform with the target variance.

        The generated weight W_ij = Σ_k H_ijk z_k has Var = d_z · Var(H) · E[z²]. Hyperfan-in asks for
        Var(W) = gain / (2 · fan_in) (half the variance from the weights, half from the bias) and
        Var(b) = gain / 2, where gain = 2 before a ReLU (Kaiming) and 1 before tanh/linear outputs.
        """
        d_z = self.weight.in_features
        var_w = gain / (2.0 * self.in_features * d_z * z_second_moment)
        var_b = gain / (2.0 * d_z * z_second_moment)
        nn.init.uniform_(self.weight.weight, -(3 * var_w) ** 0.5, (3 * var_w) ** 0.5)
        nn.init.uniform_(self.bias.weight, -(3 * var_b) ** 0.5, (3 * var_b) ** 0.5)
        nn.init.zeros_(self.weight.bias)
        nn.init.zeros_(self.bias.bias)
