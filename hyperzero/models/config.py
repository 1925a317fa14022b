"""Hyperparameters of every approximator, in one place (paper §4.1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    # --- shared by every method (the paper: "same architecture") ---
    embed_dims: tuple[int, ...] = (64, 128, 256)  # residual context embedding widths, 2 ResBlocks each
    hidden_dim: int = 256            # hidden width of the (generated or plain) policy and Q networks
    value_weight: float = 0.01       # w_v: weight of MSE(Q̂(s,a*), q*)
    td_weight: float = 0.01          # w_td: weight of the TD-consistency loss
    gamma: float = 0.99              # discount in the TD loss; the experts' γ (the original used 1.0 by mistake)
    value_scale: float = 1.0         # κ: q*, r scaled by it in value/TD losses; Q̂ un-scaled when queried (fit sets it)
    head_init: Literal["uniform", "hyperfan_in"] = "uniform"  # uniform = authors' ±0.05 / ±0.008
    obs_norm: bool = False           # normalise observations by the training data's mean/std (folded into policies)
    # --- MAML meta-policy (written with torch.func; learn2learn does not install here) ---
    maml_inner_lr: float = 0.01      # inner-loop SGD step size
    maml_inner_steps: int = 5        # inner-loop SGD steps
    maml_first_order: bool = False   # drop second-order terms (cheaper, less faithful)
    maml_support_size: int = 10      # transitions per task used for adaptation (the rest of B is the query)
    # --- PEARL-style context encoder ---
    pearl_latent_dim: int = 8        # size of the task latent z
    pearl_context_size: int = 32     # transitions per task in the context set (disjoint from predicted samples)
    pearl_kl_weight: float = 0.1     # weight of KL(q(z|c) || N(0, I))
    pearl_prior_prob: float = 0.1    # chance per task and step that z ~ N(0, I) (empty context set) in training
