"""MAML meta-policy: the context-conditioned MLP policy, meta-trained to adapt from k transitions.

The network is exactly the `mlp_policy` baseline:

    π(s; c) = tanh(Linear(hidden -> A)(ReLU(Linear(E_out + S -> hidden)([E(c); s]))))

with E the shared `ContextEmbedding`. What differs is the training objective (Finn et al. 2017):
for each task of a grouped batch, take `maml_inner_steps` SGD steps of size `maml_inner_lr` on the
action-MSE of a *support* set of `maml_support_size` transitions, then score the adapted parameters
on the disjoint *query* set (the rest of the task's samples). The outer loss is the mean query
MSE over tasks; by default the gradient flows through the inner steps (second order).

Deliberate differences from the authors' code (see docs/methods.md, "MAML and PEARL"):
  * the support/query sizes are explicit (k transitions), not `n_tasks * k_shot * 2` halves;
  * the outer loop is the shared fit loop, so MAML gets the same number of Adam steps as every
    other method instead of 500;
  * few-shot adaptation at test time is the method's own inner loop on k transitions (same lr and
    steps as in training), not 5 epochs of Adam behaviour cloning on 10 full expert episodes.

Written with `torch.func.functional_call` + `torch.autograd.grad(create_graph=True)` because
learn2learn does not install with our Python/torch. The inner loop is vectorised over the K tasks
of a batch with `torch.func.vmap`: every task gets its own copy of the parameters (a leading K
axis), and because task k's loss depends only on slice k, one `autograd.grad` of the summed loss
yields every task's own gradient.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from hyperzero.models.base import Approximator, ObsNormalizer, TaskBatch
from hyperzero.models.config import ModelConfig
from hyperzero.models.embedding import ContextEmbedding
from hyperzero.models.heads import GeneratedPolicy, MLPWeights

Params = dict[str, torch.Tensor]


class FixedPolicy(GeneratedPolicy):
    """The frozen one-hidden-layer policy a = tanh(W2 ReLU(W1 s + b1) + b2) of one task.

    Both meta methods end up here: once the context (and, for PEARL, the latent z) is fixed, their
    part of the first layer is a constant, folded into `b1`, so acting costs one small MLP. It is
    the library's `GeneratedPolicy` (same `act` on numpy or torch, [S] or [B, S]; npz/TorchScript
    export), built from plain weight tensors.
    """

    def __init__(self, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor):
        super().__init__(MLPWeights(*(t.detach().clone().unsqueeze(0) for t in (w1, b1, w2, b2))))


class ContextPolicyNet(nn.Module):
    """The `mlp_policy` network: one task's context [d] and its observations [N, S] -> actions [N, A]."""

    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, embed_dims, hidden_dim: int, extra_dim: int = 0):
        super().__init__()
        self.embed = ContextEmbedding(ctx_dim, dims=embed_dims)
        # `extra_dim` leaves room for PEARL's latent z between the embedding and the state.
        self.fc1 = nn.Linear(self.embed.out_dim + extra_dim + obs_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, act_dim)
        self.obs_dim = obs_dim

    def forward(self, context: torch.Tensor, obs: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """context [..., d], obs [..., N, S], extra [..., extra_dim] (PEARL's z) -> actions [..., N, A]."""
        # Embed the task once, then broadcast it over that task's samples.
        e = self.embed(context)
        if extra is not None:
            e = torch.cat([e, extra], dim=-1)
        e = e.unsqueeze(-2).expand(*obs.shape[:-1], -1)
        return torch.tanh(self.fc2(torch.relu(self.fc1(torch.cat([e, obs], dim=-1)))))

    def frozen_weights(self, context: torch.Tensor, prefix: torch.Tensor | None = None,
                       params: Params | None = None, obs_norm: ObsNormalizer | None = None) -> tuple[torch.Tensor, ...]:
        """(W1, b1, W2, b2) of the policy for one context [d], with the context (and an optional
        extra input such as z) folded into the first-layer bias: W1_all [e; s] + b = W1_s s + (W1_e e + b).

        `params` (names as in `named_parameters()`) replaces the module's own weights, e.g. the
        adapted weights of MAML's inner loop. `obs_norm` (the model's observation normalisation, if any) is
        folded into the first layer, so the frozen policy acts on raw observations.
        """
        p = dict(self.named_parameters()) if params is None else params
        embed_params = {n[len("embed."):]: t for n, t in p.items() if n.startswith("embed.")}
        e = functional_call(self.embed, embed_params, (context,))
        if prefix is not None:
            e = torch.cat([e, prefix], dim=-1)
        n = e.shape[-1]
        w1 = p["fc1.weight"]
        w_s, b = w1[:, n:], p["fc1.bias"] + w1[:, :n] @ e
        if obs_norm is not None:
            w_s, b = obs_norm.fold(w_s, b)
        return w_s, b, p["fc2.weight"], p["fc2.bias"]

    def fixed_policy(self, context: torch.Tensor, prefix: torch.Tensor | None = None,
                     params: Params | None = None, obs_norm: ObsNormalizer | None = None) -> FixedPolicy:
        return FixedPolicy(*self.frozen_weights(context, prefix, params, obs_norm))


def check_context(context: torch.Tensor, ctx_dim: int) -> torch.Tensor:
    """One context vector [d] (a [1, d] row is accepted too)."""
    context = torch.as_tensor(context, dtype=torch.float32)
    if context.dim() == 2 and context.shape[0] == 1:
        context = context[0]
    if context.dim() != 1 or context.shape[0] != ctx_dim:
        raise ValueError(f"context must be one vector of {ctx_dim} features, got shape {tuple(context.shape)}; "
                         "pass the normalised context vector of a single task")
    return context


def check_batch(batch: TaskBatch, obs_dim: int, act_dim: int, min_samples: int, what: str) -> tuple[int, int]:
    """Shapes of a grouped batch; `min_samples` per task is what the split needs."""
    if batch.obs.dim() != 3 or batch.obs.shape[-1] != obs_dim:
        raise ValueError(f"{what}: obs must be [K, B, {obs_dim}], got {tuple(batch.obs.shape)}; "
                         "group the transitions by task (TaskBatch)")
    K, B = batch.obs.shape[:2]
    if batch.action.shape != (K, B, act_dim):
        raise ValueError(f"{what}: action must be [{K}, {B}, {act_dim}], got {tuple(batch.action.shape)}")
    if B < min_samples:
        raise ValueError(f"{what}: {B} samples per task, but at least {min_samples} are needed")
    return K, B


def random_split(n_first: int, *tensors: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split the B samples of each task (dim 1) into a random first part of n_first and the rest.

    Random per task, so the split does not depend on how the loader ordered the samples (e.g.
    consecutive time steps), and the two parts are disjoint by construction. A (CPU) `generator`
    makes the split reproducible, e.g. for a validation metric that must not jitter.
    """
    K, B = tensors[0].shape[:2]
    order = torch.argsort(torch.rand(K, B, generator=generator).to(tensors[0].device), dim=1)
    first, rest = [], []
    for t in tensors:
        idx = order.view(K, B, *([1] * (t.dim() - 2))).expand_as(t)
        shuffled = torch.gather(t, 1, idx)
        first.append(shuffled[:, :n_first])
        rest.append(shuffled[:, n_first:])
    return first, rest


class MAMLPolicy(Approximator):
    """Second-order (or first-order) MAML over the context-conditioned MLP policy."""

    has_q = False
    is_meta = True
    zero_shot_metric = "pre_adapt_mse"  # the zero-shot row acts with the meta-init: select on its query MSE

    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None,
                 inner_params: str = "all"):
        """`inner_params`: "all" adapts every parameter in the inner loop (faithful: learn2learn's
        MAML over the whole predictor); "head" adapts only the policy MLP (fc1, fc2) and meta-learns
        the context embedding in the outer loop only (ANIL, Raghu et al. 2020), several times cheaper."""
        super().__init__()
        cfg = cfg or ModelConfig()
        if inner_params not in ("all", "head"):
            raise ValueError(f"inner_params must be 'all' or 'head' (got {inner_params!r})")
        if cfg.maml_inner_steps < 1:
            raise ValueError(f"maml_inner_steps must be >= 1 (got {cfg.maml_inner_steps}); "
                             "with 0 steps MAML is the plain mlp_policy baseline")
        if cfg.maml_inner_lr <= 0:
            raise ValueError(f"maml_inner_lr must be > 0 (got {cfg.maml_inner_lr})")
        if cfg.maml_support_size < 1:
            raise ValueError(f"maml_support_size must be >= 1 (got {cfg.maml_support_size})")
        self.cfg = cfg
        self.ctx_dim, self.obs_dim, self.act_dim = ctx_dim, obs_dim, act_dim
        self.net = ContextPolicyNet(ctx_dim, obs_dim, act_dim, cfg.embed_dims, cfg.hidden_dim)
        self.inner_params = inner_params
        self.init_obs_norm(obs_dim, cfg.obs_norm)

    def _is_adapted(self, name: str) -> bool:
        return self.inner_params == "all" or not name.startswith("embed.")

    def meta_params(self, K: int) -> Params:
        """The adapted subset of the meta-parameters, one (expanded, not copied) slice per task.
        Gradients through `expand` sum back into the shared meta-parameters."""
        return {n: p.unsqueeze(0).expand(K, *p.shape) for n, p in self.net.named_parameters() if self._is_adapted(n)}

    # ---- the inner loop ---------------------------------------------------------------------
    def _task_mse(self, params: Params, context: torch.Tensor, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Action MSE of each task under its own parameters: params [K, ...], context [K, d] -> [K].
        Parameters not in `params` (the embedding, with inner_params="head") are the shared ones."""
        shared = {n: p for n, p in self.net.named_parameters() if n not in params}

        def one_task(p, sh, c, s, a):
            return ((functional_call(self.net, {**sh, **p}, (c, s)) - a) ** 2).mean()

        return vmap(one_task, in_dims=(0, None, 0, 0, 0))(params, shared, context, obs, action)

    def inner_loop(self, context: torch.Tensor, obs: torch.Tensor, action: torch.Tensor,
                   create_graph: bool, params: Params | None = None) -> Params:
        """`maml_inner_steps` SGD steps on each task's support MSE; returns the adapted parameters
        (all, or the head only with inner_params="head"), one slice per task: [K, ...].

        With `create_graph=True` the returned parameters stay differentiable functions of the
        meta-parameters through the inner gradients (second-order MAML). With False, the inner
        gradients are constants, so d(adapted)/d(meta) = I: first-order MAML.
        """
        K = context.shape[0]
        # Adaptation needs gradients even when called under no_grad (validation, evaluation).
        with torch.enable_grad():
            if params is None:
                params = self.meta_params(K)
            for _ in range(self.cfg.maml_inner_steps):
                # Summing is safe: task k's loss depends only on slice k, so each slice of the
                # gradient is that task's own gradient of its mean support MSE.
                loss = self._task_mse(params, context, obs, action).sum()
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
                params = {n: p - self.cfg.maml_inner_lr * g for (n, p), g in zip(params.items(), grads)}
        return params

    # ---- Approximator interface ---------------------------------------------------------------
    def loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over tasks of the query MSE after adapting on each task's support set."""
        # Under no_grad nobody will backpropagate the outer loss: skip the second-order graph.
        second_order = torch.is_grad_enabled() and not self.cfg.maml_first_order
        return self._meta_loss(batch, create_graph=second_order)

    def validation_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Same metrics as `loss`, with a fixed support/query split (a steady curve for best.pt)
        and no second-order graph (the forward values are identical; nothing backpropagates)."""
        return self._meta_loss(batch, create_graph=False, generator=torch.Generator().manual_seed(0))

    def _meta_loss(self, batch: TaskBatch, create_graph: bool, generator: torch.Generator | None = None):
        n_support = self.cfg.maml_support_size
        check_batch(batch, self.obs_dim, self.act_dim, n_support + 1,
                    f"MAML (maml_support_size={n_support} plus at least one query sample; raise the samples "
                    "per task or lower maml_support_size)")
        batch = self.normalized(batch)
        (s_obs, s_act), (q_obs, q_act) = random_split(n_support, batch.obs, batch.action, generator=generator)
        adapted = self.inner_loop(batch.context, s_obs, s_act, create_graph=create_graph)
        post = self._task_mse(adapted, batch.context, q_obs, q_act)  # [K]
        loss = post.mean()
        with torch.no_grad():
            pre = self._task_mse(self.meta_params(batch.context.shape[0]), batch.context, q_obs, q_act).mean()
        metrics = {
            "loss": float(loss.detach()),
            "action_loss": float(post.detach().mean()),      # post-adaptation query MSE (what is optimised)
            "pre_adapt_mse": float(pre),                      # zero-shot query MSE of the meta-init
            "post_adapt_mse": float(post.detach().mean()),
        }
        return loss, metrics

    @torch.no_grad()
    def policy(self, context: torch.Tensor) -> FixedPolicy:
        """Zero-shot: the meta-initialisation conditioned on the context, no adaptation."""
        context = check_context(context, self.ctx_dim).to(self.net.fc1.weight.device)
        return self.net.fixed_policy(context, obs_norm=self.obs_norm)

    def adapt(self, context: torch.Tensor, support: TaskBatch) -> FixedPolicy:
        """Few-shot: the training inner loop (same lr and steps) on the k transitions of `support`.

        `support` holds one task (K=1) and k transitions; only obs and action are used. The policy
        is conditioned on `context` (support.context is ignored).
        """
        device = self.net.fc1.weight.device
        context = check_context(context, self.ctx_dim).to(device)
        K, _ = check_batch(support, self.obs_dim, self.act_dim, 1, "adapt(): support")
        if K != 1:
            raise ValueError(f"adapt(): support must hold exactly one task (K=1), got K={K}; "
                             "adapt each target task separately")
        support = self.normalized(support.to(device))
        # Start from a detached copy: test-time adaptation must never build a graph to the meta-parameters.
        start = {n: p.detach().clone().requires_grad_() for n, p in self.meta_params(1).items()}
        adapted = self.inner_loop(context[None], support.obs.to(device), support.action.to(device),
                                  create_graph=False, params=start)
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        params.update({n: p[0].detach() for n, p in adapted.items()})
        with torch.no_grad():
            return self.net.fixed_policy(context, params=params, obs_norm=self.obs_norm)
