"""Stacked replay buffers: one ring buffer per ensemble member in [N, capacity, ...] numpy arrays.

Members step in lockstep, so they share the write pointer and size; each samples with its own RNG.
Uniform sampling over transitions equals the authors' "uniform episode, then uniform index" because
every DMC episode has the same length.

n-step returns are assembled at sampling time from the stored one-step rows, so the buffer (and its
checkpoints) does not depend on n: a sampled row i sums the rewards of rows i .. i+m-1, where m <= n stops
early at an episode end or at the newest row, and bootstraps with discount gamma^m from next_obs of row i+m-1.

Shared experience (TD3Config.share_experience): each row also stores the task's reward readings (the physics
quantities its reward is computed from, e.g. the forward speed). A member may then sample rows of every member
in its pool (members with the same dynamics); a row written by another member gets its reward recomputed from
the readings with the sampling member's own reward function, so each member still learns its own task.
"""
from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "not_done", "next_obs", "episode_end", "readings")
SAMPLED = ("obs", "action", "reward", "discount", "next_obs")


class StackedReplay:
    def __init__(self, n: int, capacity: int, obs_dim: int, act_dim: int, n_readings: int = 0):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be > 0 (got {capacity})")
        self.n, self.capacity = n, capacity
        self.obs = np.zeros((n, capacity, obs_dim), np.float32)
        self.action = np.zeros((n, capacity, act_dim), np.float32)
        self.reward = np.zeros((n, capacity), np.float32)
        self.not_done = np.zeros((n, capacity), np.float32)  # 0 only at true terminations (see trainer)
        self.next_obs = np.zeros((n, capacity, obs_dim), np.float32)
        self.episode_end = np.zeros((n, capacity), bool)  # the episode ended after this row (terminal or time limit)
        self.readings = np.zeros((n, capacity, n_readings), np.float32)  # reward readings (shared experience only)
        self.ptr = 0
        self.size = 0

    def add(self, obs, action, reward, not_done, next_obs, episode_end=None, readings=None) -> None:
        """One transition per member: obs [N, S], action [N, A], reward [N], not_done [N], next_obs [N, S],
        episode_end [N] (default: where not_done is 0), readings [N, R] (when the buffer stores them)."""
        p = self.ptr
        self.obs[:, p] = obs
        self.action[:, p] = action
        self.reward[:, p] = reward
        self.not_done[:, p] = not_done
        self.next_obs[:, p] = next_obs
        self.episode_end[:, p] = (np.asarray(not_done) == 0) if episode_end is None else episode_end
        if readings is not None:
            self.readings[:, p] = readings
        self.ptr = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rngs: list[np.random.Generator], gamma: float = 0.99,
               n_step: int = 1, pools: list[list[int]] | None = None, relabel: list | None = None
               ) -> dict[str, np.ndarray]:
        """Member i draws its indices from rngs[i]; returns obs, action, reward (the n-step discounted sum),
        discount (gamma^m, 0 after a terminal) and next_obs, shaped [N, B, ...].

        With `pools`, member i draws uniformly over the rows of every member in pools[i] (its own included), and
        relabel[i] maps another member's reward readings [..., R] to member i's reward.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if pools is None:
            src = np.broadcast_to(np.arange(self.n)[:, None], (self.n, batch_size))
            idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in rngs])
        else:
            if relabel is None or len(pools) != self.n or len(relabel) != self.n:
                raise ValueError("sampling with pools needs one pool and one relabel function per member")
            flat = np.stack([rng.integers(0, len(pool) * self.size, size=batch_size) for rng, pool in zip(rngs, pools)])
            src = np.stack([np.asarray(pool)[f // self.size] for pool, f in zip(pools, flat)])
            idx = flat % self.size
        newest = (self.ptr - 1) % self.capacity
        reward = self._rewards(src, idx, relabel)
        discount = np.full(idx.shape, gamma, np.float32)
        last = idx.copy()  # the row whose next_obs the target bootstraps from
        alive = ~self.episode_end[src, idx] & (idx != newest)
        for k in range(1, n_step):
            nxt = (last + 1) % self.capacity
            reward += np.where(alive, discount * self._rewards(src, nxt, relabel), 0.0).astype(np.float32)
            last = np.where(alive, nxt, last)
            discount = np.where(alive, discount * gamma, discount).astype(np.float32)
            alive &= ~self.episode_end[src, nxt] & (nxt != newest)
        return {"obs": self.obs[src, idx], "action": self.action[src, idx], "reward": reward,
                "discount": discount * self.not_done[src, last], "next_obs": self.next_obs[src, last]}

    def _rewards(self, src: np.ndarray, idx: np.ndarray, relabel: list | None) -> np.ndarray:
        """Stored rewards of rows (src, idx); rows of another member recomputed with the sampler's reward."""
        reward = self.reward[src, idx].copy()
        if relabel is not None:
            for i in range(self.n):
                foreign = src[i] != i
                if foreign.any():
                    reward[i, foreign] = relabel[i](self.readings[src[i, foreign], idx[i, foreign]])
        return reward

    def member_state(self, i: int) -> dict:
        """Member i's rows in insertion order's storage layout (only the filled part) plus the pointer."""
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                **{name: getattr(self, name)[i, : self.size].copy() for name in FIELDS}}

    def load_member_state(self, i: int, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ValueError(f"checkpointed replay holds {state['size']} rows but capacity is {self.capacity}; "
                             "resume with the same replay_capacity and train_steps")
        for name in FIELDS:
            if name == "readings" and not self.readings.shape[-1]:
                continue  # readings only matter with shared experience
            if name == "readings" and np.shape(state.get(name, ()))[-1:] != self.readings.shape[-1:]:
                raise ValueError("the checkpoint stores no reward readings, which share_experience needs; "
                                 "resume without share_experience or delete the checkpoint")
            if name in state:  # checkpoints from before episode_end existed: only the terminal rows are known
                getattr(self, name)[i, : state["size"]] = state[name]
            elif name == "episode_end":
                self.episode_end[i, : state["size"]] = state["not_done"] == 0
        self.size = int(state["size"])
        # A larger capacity than at save time (e.g. more train_steps) keeps appending after the saved rows.
        self.ptr = int(state["ptr"]) if self.capacity == int(state["capacity"]) else self.size % self.capacity
