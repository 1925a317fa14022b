"""Tiny-budget configs shared by the expert tests (hundreds of steps, small nets, short episodes)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from hyperzero.envs import context_id, get_family
from hyperzero.experts import TD3Config, TaskSpec

TINY = TD3Config(train_steps=300, seed_steps=100, random_steps=50, max_episode_steps=100, eval_every=200,
                 eval_episodes=1, checkpoint_every=100, hidden_sizes=(32, 32), batch_size=32, torch_threads=1)


def tiny(**overrides) -> TD3Config:
    return dataclasses.replace(TINY, **overrides)


def task(root: Path, seed: int, family: str = "cheetah-run", **context) -> TaskSpec:
    full = get_family(family).context_space.validate(context)
    tid = context_id(full)
    return TaskSpec(tid, full, seed, Path(root) / f"{tid}_seed{seed}")

# A member of a stacked ensemble and its solo run do the same arithmetic through other kernels (batched against
# single matmuls), so their weights part by float reassociation, compounding over the updates: up to ~5e-6 seen
# after a tiny run (AMD EPYC with AVX-512); members that shared anything would differ by orders of magnitude more.
REASSOCIATION = {"rtol": 1e-4, "atol": 1e-4}
