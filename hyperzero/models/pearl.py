"""PEARL-style policy: a latent task variable z inferred from a set of the task's transitions.

A context encoder maps each transition (s, a, r, s') of a task to a Gaussian factor N(mu_i, var_i)
over z. The posterior q(z | c) is their product (Rakelly et al. 2019, `PEARLAgent.infer_posterior`):
permutation-invariant, and sharper the more transitions it sees. The policy is the `mlp_policy`
network with z inserted between the context embedding and the state:

    π(s; c, z) = tanh(Linear(hidden -> A)(ReLU(Linear(E_out + L + S -> hidden)([E(c); z; s]))))

The task context vector c is still given, as to every method in this library: PEARL's z can only
add what c leaves out (e.g. when c is uninformative).

Training (`loss`): each task's B samples are split at random into a context set of
`pearl_context_size` transitions, read only by the encoder, and the disjoint rest, whose expert
actions are the regression targets. The encoder therefore never sees the action it is asked to
predict (the authors' code encoded z from the same sample's (s, a*): label leakage).
z is sampled with the reparameterisation trick and KL(q(z|c) || N(0, I)) is weighted by
`pearl_kl_weight` (information bottleneck). With probability `pearl_prior_prob` per task and step
the context set is treated as empty: z is drawn from the prior N(0, I) (no KL term for that task).
The policy is thus trained on the very latent distribution it meets zero-shot, and z = 0, the mean
of that prior, is an input it was trained around rather than one it may never have seen.

Acting:
  * zero-shot `policy(c)`: no transitions yet, so z = the mean of the prior N(0, I) it was trained
    against (see `pearl_prior_prob`), 0;
  * few-shot `adapt(c, support)`: z = the posterior MEAN from the k support transitions
    (the same k expert transitions MAML adapts on);
  * online `online_policy(c)`: `reset()` at each episode start empties the context set;
    `observe(s, a, r, s')` adds the transitions the agent itself experiences and updates the
    posterior mean. Unlike the authors' code, the set is reset per episode, z is the mean (not a
    sample), and it aggregates every transition seen so far rather than only the previous one.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import nn

from hyperzero.models.base import Approximator, TaskBatch
from hyperzero.models.config import ModelConfig
from hyperzero.models.maml import ContextPolicyNet, FixedPolicy, check_batch, check_context, random_split

# Variance floor of a single factor (as oyster's `_product_of_gaussians`), so precisions stay finite.
MIN_VAR = 1e-7

ArrayLike = Union[torch.Tensor, np.ndarray, float]


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor, dim: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised product of diagonal Gaussian factors along `dim`: precisions add, and the mean is
    the precision-weighted mean of the factor means. Returns (mean, variance)."""
    precision = 1.0 / var.clamp_min(MIN_VAR)
    post_var = 1.0 / precision.sum(dim)
    post_mu = post_var * (mu * precision).sum(dim)
    return post_mu, post_var


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)), summed over the last dim."""
    return 0.5 * (var + mu**2 - 1.0 - torch.log(var.clamp_min(MIN_VAR))).sum(-1)


class TransitionEncoder(nn.Module):
    """One transition (s, a, r, s') -> one Gaussian factor (mu, var) over z. Applied per transition,
    so the set posterior built from its factors cannot depend on their order."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(2 * obs_dim + act_dim + 1, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )

    def forward(self, obs, action, reward, next_obs) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(torch.cat([obs, action, reward.unsqueeze(-1), next_obs], dim=-1))
        mu, raw = out.split(self.latent_dim, dim=-1)
        return mu, nn.functional.softplus(raw)


class LatentPolicy(FixedPolicy):
    """A frozen policy together with the latent z it was built from (for inspection and logging)."""

    def __init__(self, weights: tuple[torch.Tensor, ...], z: torch.Tensor):
        super().__init__(*weights)
        self.z = z.detach().clone()


class PEARLPolicy(Approximator):
    """Context-conditioned MLP policy plus a PEARL task latent inferred from transitions."""

    has_q = False
    is_meta = True
    zero_shot_metric = "prior_z_action_loss"  # the zero-shot row acts with z = the prior mean

    def __init__(self, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        if cfg.pearl_latent_dim < 1:
            raise ValueError(f"pearl_latent_dim must be >= 1 (got {cfg.pearl_latent_dim})")
        if cfg.pearl_context_size < 1:
            raise ValueError(f"pearl_context_size must be >= 1 (got {cfg.pearl_context_size}); "
                             "the encoder needs at least one transition per task")
        if cfg.pearl_kl_weight < 0:
            raise ValueError(f"pearl_kl_weight must be >= 0 (got {cfg.pearl_kl_weight})")
        if not 0.0 <= cfg.pearl_prior_prob < 1.0:
            raise ValueError(f"pearl_prior_prob must be in [0, 1) (got {cfg.pearl_prior_prob}); it is the chance that a "
                             "task's z is drawn from the prior during training")
        self.cfg = cfg
        self.ctx_dim, self.obs_dim, self.act_dim = ctx_dim, obs_dim, act_dim
        self.latent_dim = cfg.pearl_latent_dim
        self.encoder = TransitionEncoder(obs_dim, act_dim, cfg.pearl_latent_dim, cfg.hidden_dim)
        self.net = ContextPolicyNet(ctx_dim, obs_dim, act_dim, cfg.embed_dims, cfg.hidden_dim,
                                    extra_dim=cfg.pearl_latent_dim)
        self.init_obs_norm(obs_dim, cfg.obs_norm)  # normalises what the encoder and the policy see

    def posterior(self, obs, action, reward, next_obs) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | c) of each task from its transitions [K, N, ...] -> (mean [K, L], variance [K, L])."""
        mu, var = self.encoder(obs, action, reward, next_obs)
        return product_of_gaussians(mu, var, dim=-2)

    def loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Action MSE of the predicted samples given z ~ q(z | context set), plus the weighted KL."""
        return self._loss(batch, sample_z=True)

    def validation_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """As at test time: z is the posterior mean; the context/prediction split is fixed."""
        with torch.no_grad():
            return self._loss(batch, sample_z=False, generator=torch.Generator().manual_seed(0))

    def _loss(self, batch: TaskBatch, sample_z: bool, generator: torch.Generator | None = None):
        n_ctx = self.cfg.pearl_context_size
        check_batch(batch, self.obs_dim, self.act_dim, n_ctx + 1,
                    f"PEARL (pearl_context_size={n_ctx} context transitions plus at least one predicted "
                    "sample; raise the samples per task or lower pearl_context_size)")
        batch = self.normalized(batch)
        # Disjoint split: the encoder reads `ctx`, the loss predicts `pred`'s expert actions.
        ctx, pred = random_split(n_ctx, batch.obs, batch.action, batch.reward, batch.next_obs, generator=generator)
        mu, var = self.posterior(*ctx)
        kl_per_task = kl_to_standard_normal(mu, var)
        if sample_z:
            z = mu + var.sqrt() * torch.randn_like(mu)  # reparameterised sample of q(z|c)
            if self.cfg.pearl_prior_prob > 0:  # some tasks act from the prior (an empty context set): z ~ N(0, I)
                from_prior = torch.rand(mu.shape[0], device=mu.device) < self.cfg.pearl_prior_prob
                z = torch.where(from_prior[:, None], torch.randn_like(mu), z)
                kl_per_task = kl_per_task * (~from_prior)
        else:
            z = mu
        pred_obs, pred_act = pred[0], pred[1]
        action_mse = ((self.net(batch.context, pred_obs, z) - pred_act) ** 2).mean()
        kl = kl_per_task.mean()
        loss = action_mse + self.cfg.pearl_kl_weight * kl
        with torch.no_grad():
            # How much the latent helps: the same prediction with the prior mean z = 0 (zero-shot).
            prior_mse = ((self.net(batch.context, pred_obs, torch.zeros_like(z)) - pred_act) ** 2).mean()
        metrics = {
            "loss": float(loss.detach()),
            "action_loss": float(action_mse.detach()),
            "kl": float(kl.detach()),
            "prior_z_action_loss": float(prior_mse),
            "posterior_std": float(var.detach().sqrt().mean()),
        }
        return loss, metrics

    def _device(self) -> torch.device:
        return self.net.fc1.weight.device

    @torch.no_grad()
    def policy(self, context: torch.Tensor) -> LatentPolicy:
        """Zero-shot: no transitions of the task yet, so z is the mean of the N(0, I) prior the policy was
        trained against (`pearl_prior_prob` of its training latents were drawn from it), 0."""
        context = check_context(context, self.ctx_dim).to(self._device())
        z = torch.zeros(self.latent_dim, device=self._device())
        return LatentPolicy(self.net.frozen_weights(context, prefix=z, obs_norm=self.obs_norm), z)

    @torch.no_grad()
    def adapt(self, context: torch.Tensor, support: TaskBatch) -> LatentPolicy:
        """Few-shot: z = posterior mean from the k transitions (s, a, r, s') of `support` (K=1).

        The policy is conditioned on `context` (support.context is ignored).
        """
        device = self._device()
        context = check_context(context, self.ctx_dim).to(device)
        K, _ = check_batch(support, self.obs_dim, self.act_dim, 1, "adapt(): support")
        if K != 1:
            raise ValueError(f"adapt(): support must hold exactly one task (K=1), got K={K}; "
                             "adapt each target task separately")
        support = self.normalized(support.to(device))
        mu, _ = self.posterior(support.obs, support.action, support.reward, support.next_obs)
        return LatentPolicy(self.net.frozen_weights(context, prefix=mu[0], obs_norm=self.obs_norm), mu[0])

    def online_policy(self, context: torch.Tensor) -> "OnlinePEARLPolicy":
        """Per-episode variant: starts at z = 0 and sharpens as `observe` is fed transitions."""
        return OnlinePEARLPolicy(self, check_context(context, self.ctx_dim).to(self._device()))


class OnlinePEARLPolicy:
    """PEARL acting within an episode: the context set is what the agent has seen since `reset()`.

    The product of Gaussians is kept as running sums (total precision, precision-weighted mean),
    so each `observe` costs one encoder pass and z is always the current posterior mean. With no
    transitions it is the prior mean 0 (= `PEARLPolicy.policy`); after observing the k transitions
    of a support set it equals `PEARLPolicy.adapt` on that set.
    """

    def __init__(self, model: PEARLPolicy, context: torch.Tensor):
        self.model, self.context = model, context
        self.reset()

    def reset(self) -> None:
        """Call at every episode start: forget the previous episode's transitions."""
        device, L = self.context.device, self.model.latent_dim
        self._precision = torch.zeros(L, device=device)
        self._weighted_mu = torch.zeros(L, device=device)
        self.num_observed = 0
        self._refresh()

    @property
    def z(self) -> torch.Tensor:
        if self.num_observed == 0:
            return torch.zeros_like(self._precision)  # empty set: the prior N(0, I)
        return self._weighted_mu / self._precision

    @torch.no_grad()
    def observe(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike) -> None:
        """Add one transition ([S], [A], scalar, [S]) or a batch ([N, S], [N, A], [N], [N, S])."""
        def t(x):
            return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x,
                                   dtype=torch.float32, device=self.context.device)

        s, a, r, s2 = t(obs), t(action), t(reward), t(next_obs)
        s, a, s2 = s.reshape(-1, self.model.obs_dim), a.reshape(-1, self.model.act_dim), s2.reshape(-1, self.model.obs_dim)
        r = r.reshape(-1)
        if self.model.obs_norm is not None:
            s, s2 = self.model.obs_norm(s), self.model.obs_norm(s2)
        if not (s.shape[0] == a.shape[0] == r.shape[0] == s2.shape[0]):
            raise ValueError(f"observe(): obs, action, reward, next_obs must describe the same number of "
                             f"transitions, got {s.shape[0]}, {a.shape[0]}, {r.shape[0]}, {s2.shape[0]}")
        mu, var = self.model.encoder(s, a, r, s2)
        precision = 1.0 / var.clamp_min(MIN_VAR)
        self._precision += precision.sum(0)
        self._weighted_mu += (mu * precision).sum(0)
        self.num_observed += s.shape[0]
        self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        self._policy = self.model.net.fixed_policy(self.context, prefix=self.z, obs_norm=self.model.obs_norm)

    def act(self, obs):
        return self._policy.act(obs)

    def __call__(self, obs):
        return self.act(obs)
