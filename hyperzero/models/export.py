"""Export the policy of one context: a `.npz` of plain weights acted on by pure numpy, or TorchScript.

Importing this module does not import torch, so a deployed policy needs only numpy:

    from hyperzero.models.export import NumpyPolicy
    policy = NumpyPolicy.load("policy.npz")
    action = policy.act(obs)           # [S] or [B,S] -> [A] or [B,A] in [-1, 1]

The file holds `pi_w1 [H,S]`, `pi_b1 [H]`, `pi_w2 [A,H]`, `pi_b2 [A]` (and `q_*` for Q̂ when the
method has one), plus `format = "hyperzero-policy-v1"` and any metadata given (e.g. the context).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hyperzero.utils.io import atomic_save_npz, atomic_write_bytes

FORMAT = "hyperzero-policy-v1"
_LAYERS = ("w1", "b1", "w2", "b2")


def save_policy_npz(path: str | Path, weights: dict[str, np.ndarray], **metadata) -> Path:
    missing = [f"pi_{n}" for n in _LAYERS if f"pi_{n}" not in weights]
    if missing:
        raise ValueError(f"policy weights lack {missing}; pass GeneratedPolicy.numpy_weights()")
    return atomic_save_npz(path, format=np.array(FORMAT), metadata=np.array(json.dumps(metadata, default=str)),
                           **{k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})


class NumpyPolicy:
    """Deterministic one-hidden-layer policy (and Q̂) in numpy: tanh(W2 relu(W1 s + b1) + b2)."""

    def __init__(self, weights: dict[str, np.ndarray], metadata: dict | None = None):
        self.pi = [np.asarray(weights[f"pi_{n}"], dtype=np.float32) for n in _LAYERS]
        has_q = all(f"q_{n}" in weights for n in _LAYERS)
        self.qnet = [np.asarray(weights[f"q_{n}"], dtype=np.float32) for n in _LAYERS] if has_q else None
        self.metadata = metadata or {}
        self.obs_dim, self.act_dim = self.pi[0].shape[1], self.pi[2].shape[0]

    @classmethod
    def load(cls, path: str | Path) -> "NumpyPolicy":
        with np.load(path, allow_pickle=False) as f:
            if "format" not in f or str(f["format"]) != FORMAT:
                raise ValueError(f"{path} is not a {FORMAT} file; write it with GeneratedPolicy.save_npz")
            weights = {k: f[k] for k in f.files if k not in ("format", "metadata")}
            metadata = json.loads(str(f["metadata"])) if "metadata" in f.files else {}
        return cls(weights, metadata)

    @staticmethod
    def _mlp(x: np.ndarray, w: list[np.ndarray]) -> np.ndarray:
        return np.maximum(x @ w[0].T + w[1], 0.0) @ w[2].T + w[3]

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if x.shape[-1] != self.obs_dim:
            raise ValueError(f"obs has {x.shape[-1]} features but this policy expects {self.obs_dim}")
        return np.tanh(self._mlp(x, self.pi))

    def q(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        if self.qnet is None:
            raise ValueError("this exported policy has no Q-function (the method had no value head)")
        xa = np.concatenate([np.asarray(obs, np.float32), np.asarray(action, np.float32)], axis=-1)
        return self._mlp(xa, self.qnet)[..., 0]


def save_torchscript(path: str | Path, weights: dict[str, np.ndarray]) -> Path:
    """A TorchScript module with `forward(obs [B,S]) -> action [B,A]` (load with torch.jit.load)."""
    import io

    import torch

    class _Policy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for n in _LAYERS:
                self.register_buffer(n, torch.as_tensor(weights[f"pi_{n}"]))

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            # the buffers registered above (type checkers see nn.Module's Tensor | Module attributes)
            h = torch.relu(torch.nn.functional.linear(obs, self.w1, self.b1))  # type: ignore[arg-type]
            return torch.tanh(torch.nn.functional.linear(h, self.w2, self.b2))  # type: ignore[arg-type]

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(_Policy()), buf)
    return atomic_write_bytes(path, buf.getvalue())
