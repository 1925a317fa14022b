"""Stacked replay buffers: one ring buffer per ensemble member in [N, capacity, ...] numpy arrays.

Members step in lockstep, so they share the write pointer and size; each samples with its own RNG.
Uniform sampling over transitions equals the authors' "uniform episode, then uniform index" because
every DMC episode has the same length.

n-step returns are assembled at sampling time from the stored one-step rows, so the buffer (and its
checkpoints) does not depend on n: a sampled row i sums the rewards of rows i .. i+m-1, where m <= n stops
early at an episode end or at the newest row, and bootstraps with discount gamma^m from next_obs of row i+m-1.
"""
from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "not_done", "next_obs", "episode_end")
SAMPLED = ("obs", "action", "reward", "discount", "next_obs")


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
        self.episode_end = np.zeros((n, capacity), bool)  # the episode ended after this row (terminal or time limit)
        self.ptr = 0
        self.size = 0

    def add(self, obs, action, reward, not_done, next_obs, episode_end=None) -> None:
        """One transition per member: obs [N, S], action [N, A], reward [N], not_done [N], next_obs [N, S],
        episode_end [N] (default: where not_done is 0)."""
        p = self.ptr
        self.obs[:, p] = obs
        self.action[:, p] = action
        self.reward[:, p] = reward
        self.not_done[:, p] = not_done
        self.next_obs[:, p] = next_obs
        self.episode_end[:, p] = (np.asarray(not_done) == 0) if episode_end is None else episode_end
        self.ptr = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rngs: list[np.random.Generator], gamma: float = 0.99,
               n_step: int = 1) -> dict[str, np.ndarray]:
        """Member i draws its indices from rngs[i]; returns obs, action, reward (the n-step discounted sum),
        discount (gamma^m, 0 after a terminal) and next_obs, shaped [N, B, ...]."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in rngs])
        rows = np.arange(self.n)[:, None]
        newest = (self.ptr - 1) % self.capacity
        reward = self.reward[rows, idx].copy()
        discount = np.full(idx.shape, gamma, np.float32)
        last = idx.copy()  # the row whose next_obs the target bootstraps from
        alive = ~self.episode_end[rows, idx] & (idx != newest)
        for k in range(1, n_step):
            nxt = (last + 1) % self.capacity
            reward += np.where(alive, discount * self.reward[rows, nxt], 0.0).astype(np.float32)
            last = np.where(alive, nxt, last)
            discount = np.where(alive, discount * gamma, discount).astype(np.float32)
            alive &= ~self.episode_end[rows, nxt] & (nxt != newest)
        return {"obs": self.obs[rows, idx], "action": self.action[rows, idx], "reward": reward,
                "discount": discount * self.not_done[rows, last], "next_obs": self.next_obs[rows, last]}

    def member_state(self, i: int) -> dict:
        """Member i's rows in insertion order's storage layout (only the filled part) plus the pointer."""
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                **{name: getattr(self, name)[i, : self.size].copy() for name in FIELDS}}

    def load_member_state(self, i: int, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ValueError(f"checkpointed replay holds {state['size']} rows but capacity is {self.capacity}; "
                             "resume with the same replay_capacity and train_steps")
        for name in FIELDS:
            if name in state:  # checkpoints from before episode_end existed: only the terminal rows are known
                getattr(self, name)[i, : state["size"]] = state[name]
            elif name == "episode_end":
                self.episode_end[i, : state["size"]] = state["not_done"] == 0
        self.size = int(state["size"])
        # A larger capacity than at save time (e.g. more train_steps) keeps appending after the saved rows.
        self.ptr = int(state["ptr"]) if self.capacity == int(state["capacity"]) else self.size % self.capacity
