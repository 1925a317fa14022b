"""Extra comparison methods the pipeline fits beside the registry's.

`context_blind`: the `mlp_policy` architecture fed a constant (zero) context, both in training and
when acting. It sees exactly the same transitions as every other method, so the gap between it and
a context-conditioned method is the value of knowing the task. On a sweep with speeds in both
directions it can at best learn one compromise gait.

Registered into `hyperzero.models.registry.METHODS` at run time by `register_baselines()` (called by
the pipeline, the evaluation loader and the CLI), so `fit`/`load_fit` build it like any method.
"""
from __future__ import annotations

import torch

from hyperzero.models.mlp import ContextMLP

CONTEXT_BLIND = "context_blind"


class ContextBlindMLP(ContextMLP):
    """ContextMLP whose context input is replaced by zeros: one policy for every task."""

    def generate(self, context: torch.Tensor):
        return super().generate(torch.zeros_like(context))


def register_baselines() -> None:
    from hyperzero.models.registry import METHODS

    METHODS.setdefault(CONTEXT_BLIND, ("hyperzero.launchers.baselines:ContextBlindMLP",
                                       {"use_q": False, "use_td": False},
                                       "baseline: mlp_policy with a constant context (cannot tell tasks apart)"))
