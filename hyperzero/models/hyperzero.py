"""HyperZero (paper §3.2): a hypernetwork that maps a context to a near-optimal policy and Q-function.

    z = E(c)                                    shared residual embedding (embedding.py)
    θ(c) = heads_π(z)  -> W1 [H,S], b1 [H], W2 [A,H], b2 [A]          π̂_c(s)    = tanh(W2 ReLU(W1 s + b1) + b2)
    φ(c) = heads_Q(z)  -> V1 [H,S+A], c1 [H], V2 [1,H], c2 [1]        Q̂_c(s, a) = V2 ReLU(V1 [s; a] + c1) + c2

Each head is a pair of Linears from z (weight and bias of one target layer). Weights are generated
once per task of a grouped batch and applied with batched matmul (heads.py). The loss and the
generated policy live in `GeneratingApproximator`. Ablations: `use_q=False` (policy only) and
`use_td=False` (policy + value, no TD term).
"""
from __future__ import annotations

import torch

from hyperzero.models.config import ModelConfig
from hyperzero.models.embedding import ContextEmbedding
from hyperzero.models.heads import GeneratingApproximator, MLPWeights, TaskNets, WeightHead

FIRST_LAYER_BOUND = 0.05   # authors' uniform head init for a first-layer head
LAST_LAYER_BOUND = 0.008   # ... and for a last-layer head


class HyperZero(GeneratingApproximator):
    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None,
                 use_q: bool = True, use_td: bool = True):
        cfg = cfg or ModelConfig()
        super().__init__(ctx_dim, obs_dim, act_dim, cfg, use_q, use_td)
        h = cfg.hidden_dim
        self.embedding = ContextEmbedding(ctx_dim, cfg.embed_dims)
        z = self.embedding.out_dim
        self.pi1, self.pi2 = WeightHead(z, obs_dim, h), WeightHead(z, h, act_dim)
        if use_q:
            self.q1, self.q2 = WeightHead(z, obs_dim + act_dim, h), WeightHead(z, h, 1)
        self.reset_heads(cfg.head_init)

    def _heads(self):
        firsts = [self.pi1] + ([self.q1] if self.use_q else [])
        lasts = [self.pi2] + ([self.q2] if self.use_q else [])
        return firsts, lasts

    @torch.no_grad()
    def reset_heads(self, head_init: str) -> None:
        firsts, lasts = self._heads()
        if head_init == "uniform":
            for head in firsts:
                head.init_uniform_(FIRST_LAYER_BOUND)
            for head in lasts:
                head.init_uniform_(LAST_LAYER_BOUND)
        elif head_init == "hyperfan_in":
            # E[z²] of the embedding over contexts spread over the normalised range [-1, 1].
            g = torch.Generator().manual_seed(0)
            probe = torch.rand(1024, self.ctx_dim, generator=g) * 2 - 1
            m2 = float(self.embedding(probe.to(self.pi1.weight.weight.device)).pow(2).mean())
            for head in firsts:
                head.init_hyperfan_in_(m2, gain=2.0)   # followed by ReLU
            for head in lasts:
                head.init_hyperfan_in_(m2, gain=1.0)   # followed by tanh / linear output
        else:
            raise ValueError(f"unknown head_init {head_init!r}; choose 'uniform' (authors') or 'hyperfan_in'")

    def generate(self, context: torch.Tensor) -> TaskNets:
        z = self.embedding(context)                 # [K, 256]
        pi = MLPWeights(*self.pi1(z), *self.pi2(z))
        q = MLPWeights(*self.q1(z), *self.q2(z)) if self.use_q else None
        return TaskNets(pi, q)
