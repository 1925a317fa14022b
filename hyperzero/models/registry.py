"""Method name -> approximator class. Imports lazily so a method's module loads only when used."""
from __future__ import annotations

import importlib

from hyperzero.models.base import Approximator
from hyperzero.models.config import ModelConfig

# name: ("module:Class", {constructor overrides}, one-line description)
METHODS: dict[str, tuple[str, dict, str]] = {
    "hyperzero": ("hyperzero.models.hyperzero:HyperZero", {}, "hypernetwork generating policy and Q, with TD loss"),
    "hyperzero_without_td": ("hyperzero.models.hyperzero:HyperZero", {"use_td": False}, "ablation: no TD loss"),
    "hyperzero_without_q": ("hyperzero.models.hyperzero:HyperZero", {"use_q": False, "use_td": False}, "ablation: policy only"),
    "mlp_policy": ("hyperzero.models.mlp:ContextMLP", {"use_q": False, "use_td": False}, "context-conditioned MLP policy"),
    "mlp_uvfa": ("hyperzero.models.mlp:ContextMLP", {"use_q": True, "use_td": False}, "context MLP policy + UVFA value head"),
    "mlp_uvfa_td": ("hyperzero.models.mlp:ContextMLP", {"use_q": True, "use_td": True}, "context MLP + UVFA + TD loss"),
    "context_blind": ("hyperzero.models.mlp:ContextBlindMLP", {}, "mlp_policy with a constant context (cannot tell tasks apart)"),
    "maml": ("hyperzero.models.maml:MAMLPolicy", {}, "MAML meta-policy (zero- and few-shot)"),
    "pearl": ("hyperzero.models.pearl:PEARLPolicy", {}, "PEARL-style policy with a set context encoder"),
}


def build_method(name: str, ctx_dim: int, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None) -> Approximator:
    """Every method class takes (ctx_dim, obs_dim, act_dim, cfg, **overrides)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    target, overrides, _ = METHODS[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(ctx_dim, obs_dim, act_dim, cfg or ModelConfig(), **overrides)
