"""Stacked replay buffers: one ring buffer per ensemble member in [N, capacity, ...] numpy arrays.

Members step in lockstep, so they share the write pointer and size; each samples with its own RNG.
Uniform sampling over transitions equals the authors' "uniform episode, then uniform index" because
every DMC episode has the same length.
"""
from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "not_done", "next_obs")


class StackedReplay:
    def __init__(self, n: int, capacity: int, obs_dim: int, act_dim: int):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be > 0 (got {capacity})")
        self.n, self.capacity = n, capacity
        self.obs = np.zeros((n, capacity, obs_dim), np.float32)
        self.action = np.zeros((n, capacity, act_dim), np.float32)
        self.reward = np.zeros((n, capacity), np.float32)
        self.not_done = np.zeros((n, capacity), np.float32)  # 0 only at true terminations (see trainer)
        self.next_obs = np.zeros((n, capacity, obs_dim), np.float32)
        self.ptr = 0
        self.size = 0

    def add(self, obs, action, reward, not_done, next_obs) -> None:
        """One transition per member: obs [N, S], action [N, A], reward [N], not_done [N], next_obs [N, S]."""
        p = self.ptr
        self.obs[:, p] = obs
        self.action[:, p] = action
        self.reward[:, p] = reward
        self.not_done[:, p] = not_done
        self.next_obs[:, p] = next_obs
        self.ptr = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        """Member i draws its indices from rngs[i]; returns arrays shaped [N, B, ...]."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in rngs])
        rows = np.arange(self.n)[:, None]
        return {name: getattr(self, name)[rows, idx] for name in FIELDS}

    def member_state(self, i: int) -> dict:
        """Member i's rows in insertion order's storage layout (only the filled part) plus the pointer."""
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                **{name: getattr(self, name)[i, : self.size].copy() for name in FIELDS}}

    def load_member_state(self, i: int, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ValueError(f"checkpointed replay holds {state['size']} rows but capacity is {self.capacity}; "
                             "resume with the same replay_capacity and train_steps")
        for name in FIELDS:
            getattr(self, name)[i, : state["size"]] = state[name]
        self.size = int(state["size"])
        # A larger capacity than at save time (e.g. more train_steps) keeps appending after the saved rows.
        self.ptr = int(state["ptr"]) if self.capacity == int(state["capacity"]) else self.size % self.capacity
