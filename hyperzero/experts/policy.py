"""A trained expert as a plain numpy policy: what the dataset stage and evaluation consume."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hyperzero.experts.solvers import solver_of
from hyperzero.experts.trainer import EXPERT, SUMMARY
from hyperzero.utils.io import load_torch, read_json


class ExpertPolicy:
    """Deterministic expert of one task, whichever solver trained it (`solver`: td3, sac, ...).

    act(obs [B, S]) -> a [B, A] (float32, in [-1, 1]; SAC's: the mean action); q(obs [B, S], act [B, A]) -> [B],
    the online critic's Q1 (the authors' q*). Always fp32, whatever precision trained it.
    """

    def __init__(self, payload: dict, summary: dict | None = None, device: str | torch.device = "cpu"):
        self.family: str = payload["family"]
        self.context: dict = dict(payload["context"])
        self.task_id: str = payload["task_id"]
        self.obs_dim, self.act_dim = int(payload["obs_dim"]), int(payload["act_dim"])
        self.train_steps: int = int(payload["train_steps"])
        self.seed: int = int(payload["seed"])
        self.summary = summary or {}
        self.device = torch.device(device)
        self.solver: str = solver_of(payload).name
        # obs_norm statistics, when used, are in the saved state dicts
        self._actor, self._critic = solver_of(payload).make_policy(self.obs_dim, self.act_dim, payload["hidden_sizes"],
                                                                   payload.get("config", {}))
        self._actor.load_state_dict(payload["actor"])
        self._critic.load_state_dict(payload["critic"])
        self._actor.to(self.device).eval().requires_grad_(False)
        self._critic.to(self.device).eval().requires_grad_(False)

    def _batch(self, x: np.ndarray, dim: int, name: str) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"{name} must have shape [B, {dim}] for {self.family}; got {x.shape} "
                             f"(add a batch axis with x[None] for a single row)")
        return torch.as_tensor(x, device=self.device)[None]

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._actor(self._batch(obs, self.obs_dim, "obs"))[0].cpu().numpy()

    @torch.no_grad()
    def q(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        o, a = self._batch(obs, self.obs_dim, "obs"), self._batch(act, self.act_dim, "act")
        if o.shape[1] != a.shape[1]:
            raise ValueError(f"obs and act must have the same batch size; got {o.shape[1]} and {a.shape[1]}")
        return self._critic.q1(o, a)[0].cpu().numpy()

    def __repr__(self) -> str:
        return f"ExpertPolicy({self.family}, {self.task_id}, steps={self.train_steps})"


def load_expert(task_dir: str | Path, device: str | torch.device = "cpu") -> ExpertPolicy:
    """Load `task_dir/expert.pt` (and summary.json when present)."""
    task_dir = Path(task_dir)
    path = task_dir / EXPERT
    if not path.exists():
        hint = " (training is not finished: rerun `hyperzero experts train` to resume)" if (
            task_dir / "checkpoint.pt").exists() else ""
        raise FileNotFoundError(f"no expert at {path}{hint}")
    payload = load_torch(path, map_location="cpu", weights_only=True)
    summary = read_json(task_dir / SUMMARY) if (task_dir / SUMMARY).exists() else None
    return ExpertPolicy(payload, summary, device)
