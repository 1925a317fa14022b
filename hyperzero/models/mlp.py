"""Context-conditioned MLP baselines (paper §4 baselines 1-2).

    π̂(s, c)    = tanh(Linear(H -> A)(ReLU(Linear(256+S -> H)([E(c); s]))))          mlp_policy
    Q̂(s, a, c) = Linear(H -> 1)(ReLU(Linear(256+S+A -> H)([E(c); s; a])))        UVFA head (mlp_uvfa, mlp_uvfa_td)

Same embedding E and same init as HyperZero. For a fixed context the first layer splits into a
shared weight on s (or [s; a]) and a context-dependent bias W_z E(c) + b, so the model returns the
same per-task `TaskNets` as HyperZero and shares its loss, sampler and fast `GeneratedPolicy`.
"""
from __future__ import annotations

import torch
from torch import nn

from hyperzero.models.config import ModelConfig
from hyperzero.models.embedding import ContextEmbedding
from hyperzero.models.heads import GeneratingApproximator, MLPWeights, TaskNets


class _ConditionedMLP(nn.Module):
    """Linear([z; x] -> H) -> ReLU -> Linear(H -> O), stored split as z-part and x-part of layer 1."""

    def __init__(self, z_dim: int, x_dim: int, hidden: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(z_dim + x_dim, hidden)
        self.fc2 = nn.Linear(hidden, out)
        self.z_dim = z_dim

    def weights(self, z: torch.Tensor) -> MLPWeights:
        k = z.shape[0]
        w_z, w_x = self.fc1.weight[:, :self.z_dim], self.fc1.weight[:, self.z_dim:]
        b1 = torch.addmm(self.fc1.bias, z, w_z.t())                              # [K, H]
        return MLPWeights(w_x.expand(k, -1, -1), b1,
                          self.fc2.weight.expand(k, -1, -1), self.fc2.bias.expand(k, -1))


class ContextMLP(GeneratingApproximator):
    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None,
                 use_q: bool = False, use_td: bool = False):
        cfg = cfg or ModelConfig()
        super().__init__(ctx_dim, obs_dim, act_dim, cfg, use_q, use_td)
        self.embedding = ContextEmbedding(ctx_dim, cfg.embed_dims)
        z = self.embedding.out_dim
        self.actor = _ConditionedMLP(z, obs_dim, cfg.hidden_dim, act_dim)
        if use_q:
            self.critic = _ConditionedMLP(z, obs_dim + act_dim, cfg.hidden_dim, 1)

    def generate(self, context: torch.Tensor) -> TaskNets:
        z = self.embedding(context)
        return TaskNets(self.actor.weights(z), self.critic.weights(z) if self.use_q else None)


class ContextBlindMLP(ContextMLP):
    """`mlp_policy` fed a constant (zero) context in training and acting: one policy for every task.

    It sees exactly the transitions the other methods see, so the gap to a context-conditioned
    method is the value of knowing the task; with target speeds in both directions it can at best
    learn one compromise gait.
    """

    def generate(self, context: torch.Tensor) -> TaskNets:
        return super().generate(torch.zeros_like(context))
