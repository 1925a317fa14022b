"""Rollouts for a fit: the lockstep episode runner (`hyperzero.envs.rollout`) plus a wrapper that turns a
torch policy into the numpy function it calls."""
from __future__ import annotations

from typing import Any

import numpy as np

from hyperzero.envs.rollout import ActFn, rollout_returns, zero_action_policy  # noqa: F401 (re-exported)


def numpy_policy(policy: Any) -> ActFn:
    """Wrap anything with `act(obs[B,S]) -> a[B,A]` (torch or numpy in/out) as a numpy function."""
    import torch

    act = policy.act if hasattr(policy, "act") else policy

    def act_numpy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = act(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return np.asarray(out, dtype=np.float32)

    return act_numpy
