"""How smoothly experts vary along the context grid: the action distance between neighbouring experts on shared
states. A hypernetwork interpolates between the experts it is trained on; neighbours that solve close tasks with
unrelated gaits give it nothing to interpolate, however well each scores (docs/experts.md "Chains").

Neighbours are pairs of tasks of the same direction (signs of the signed features) where one is the other's
nearest task in the family's bounds normalised to [0, 1]. The shared states are the union of both experts'
deterministic rollouts on their own tasks (fresh episode seeds); the distance is the root mean square, over those
states and the action dimensions, of the difference of the two experts' actions: 0 = the same policy, 2 = opposite
saturated actions everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SMOOTHNESS_SEED = 3_000_000  # rollout episode k starts from seed 3_000_000 + k: no dataset, eval or val seed


def grid_neighbours(family: str, contexts: Sequence[Mapping[str, float]]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of the same direction where j is one of i's nearest tasks or i one of j's (ties: all)."""
    from hyperzero.experts.chain import direction, unit_points

    points = unit_points(family, contexts)
    dirs = [direction(family, c) for c in contexts]
    pairs = set()
    for i in range(len(contexts)):
        same = [j for j in range(len(contexts)) if j != i and dirs[j] == dirs[i]]
        if not same:
            continue
        d = {j: float(np.linalg.norm(points[i] - points[j])) for j in same}
        closest = min(d.values())
        pairs |= {(min(i, j), max(i, j)) for j in same if d[j] <= closest + 1e-12}
    return sorted(pairs)


def rollout_states(family: str, context: Mapping[str, float], act, seeds: Sequence[int],
                   max_steps: int | None = None) -> np.ndarray:
    """The observations a deterministic policy `act` ([1, S] -> [1, A]) visits on its task: [n_states, S]."""
    from hyperzero.envs import get_family, make

    limit = max_steps or get_family(family).episode_steps
    env = make(family, context=dict(context))
    states = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            for _ in range(limit):
                states.append(np.asarray(obs, np.float32))
                obs, _, term, trunc, _ = env.step(act(np.asarray(obs, np.float32)[None])[0])
                if term or trunc:
                    break
    finally:
        env.close()
    return np.stack(states)


def neighbour_action_distances(experts_dir: str | Path, task_ids: Sequence[str] | None = None, episodes: int = 1,
                               max_steps: int | None = None, seed: int = SMOOTHNESS_SEED) -> list[dict]:
    """For every pair of grid neighbours among the experts in `experts_dir` (or `task_ids` of them): {"a", "b",
    "distance", "states"}; see the module docstring. Each expert is rolled out once, on `episodes` episodes."""
    from hyperzero.experts.policy import load_expert

    root = Path(experts_dir)
    ids = list(task_ids) if task_ids is not None else sorted(p.parent.name for p in root.glob("*/expert.pt"))
    experts = [load_expert(root / i) for i in ids]
    if not experts:
        return []
    family = experts[0].family
    seeds = [seed + k for k in range(episodes)]
    states = [rollout_states(family, e.context, e.act, seeds, max_steps) for e in experts]
    rows = []
    for i, j in grid_neighbours(family, [e.context for e in experts]):
        shared = np.concatenate([states[i], states[j]])
        diff = experts[i].act(shared) - experts[j].act(shared)
        rows.append({"a": ids[i], "b": ids[j], "distance": float(np.sqrt(np.mean(diff ** 2))),
                     "states": int(len(shared))})
    return rows


def mean_neighbour_action_distance(experts_dir: str | Path, **kw) -> float | None:
    """The mean of `neighbour_action_distances` over every neighbouring pair (None without a pair)."""
    rows = neighbour_action_distances(experts_dir, **kw)
    return float(np.mean([r["distance"] for r in rows])) if rows else None
