"""Experts along the context grid: a few anchors from scratch, every other task warm-started from its nearest
finished expert of the same direction for fewer steps, in waves (docs/experts.md "Chains").

Distances are taken in the family's context bounds normalised to [0, 1] per feature; a task only ever starts
from a task whose signed features (a target speed's direction) have its signs, so a backward runner never starts
from a forward gait. The plan (anchors, waves, each task's source) is a pure function of the grid and the
ChainConfig, recorded in `out_dir/chain.json` beside packing.json, so a resumed run or a redo trains every task
from the same source in the same ensemble.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from hyperzero.experts.trainer import TaskSpec

CHAIN = "chain.json"
TIE = 1e-6  # distances and squared distances (in [0, 1] units per feature, float32) closer than this are equal;
#            grid steps are far coarser (a step of 1/1000 of a feature's range would be 1e-6 squared)
CHAIN_FORMAT = 1


@dataclass(frozen=True)
class ChainConfig:
    enabled: bool = False  # train anchors from scratch, then every other task warm-started from its nearest expert
    anchors: int = 2  # tasks per direction (sign of the signed features) trained from scratch: centre, then farthest
    steps: int = 0  # env steps of a warm-started (chained) expert; 0 = a third of train_steps, whole episodes

    def validate(self, episode_steps: int | None = None, seed_steps: int | None = None,
                 train_steps: int | None = None) -> None:
        """ValueError naming the bad field and a fix; `episode_steps`, `seed_steps`, `train_steps`: the experts'."""
        if self.anchors < 1:
            raise ValueError(f"experts.chain.anchors={self.anchors}: at least one anchor per direction is trained "
                             f"from scratch; set anchors >= 1")
        if self.steps < 0:
            raise ValueError(f"experts.chain.steps={self.steps}: must be >= one episode, or 0 for a third of "
                             f"train_steps")
        if self.steps and episode_steps and self.steps < episode_steps:
            raise ValueError(f"experts.chain.steps={self.steps} is shorter than one episode ({episode_steps} steps); "
                             f"set steps >= {episode_steps} (or 0 for a third of train_steps)")
        if seed_steps is not None and train_steps and episode_steps:
            steps = self.chained_steps(train_steps, episode_steps)
            if steps <= seed_steps:
                raise ValueError(f"experts.chain.steps: a chained expert would train {steps} steps, but no update "
                                 f"happens before seed_steps={seed_steps}; set chain.steps > {seed_steps} or lower "
                                 f"experts.seed_steps")

    def chained_steps(self, train_steps: int, episode_steps: int) -> int:
        """Env steps of a chained expert: `steps`, or a third of `train_steps` rounded up to whole episodes."""
        if self.steps:
            return int(self.steps)
        return max(episode_steps, -(-(train_steps // 3) // episode_steps) * episode_steps)

    def to_dict(self) -> dict:
        return asdict(self)


def direction(family: str, context: Mapping[str, float]) -> tuple[int, ...]:
    """The signs of the family's signed (nonzero) features: tasks of one direction chain among themselves."""
    from hyperzero.envs import get_family

    return tuple(int(np.sign(context[f.name])) for f in get_family(family).features if f.nonzero)


def unit_points(family: str, contexts: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Contexts in the family's bounds mapped to [0, 1] per feature: [n_tasks, n_features]."""
    from hyperzero.envs import get_family

    space = get_family(family).context_space
    return np.stack([(space.normalize(space.to_vector(c, space.names), space.names) + 1.0) / 2.0 for c in contexts])


def choose_anchors(points: np.ndarray, k: int) -> list[int]:
    """`k` indices spread over the points: the point nearest their centroid, then repeatedly the point farthest
    from those chosen (ties: the first in order). The centre first keeps the chains from one anchor shortest;
    farthest-point sampling then covers the grid's ends (and, in 2-D, its corners) without assuming a lattice."""
    n = len(points)
    if k >= n:
        return list(range(n))
    centre = points.mean(axis=0)
    chosen = [int(np.argmin(np.linalg.norm(points - centre, axis=1)))]
    while len(chosen) < k:
        gap = np.min(np.linalg.norm(points[:, None] - points[chosen][None], axis=2), axis=1)
        gap[chosen] = -1.0
        chosen.append(int(np.argmax(gap)))
    return chosen


def grid_neighbours(points: np.ndarray, dirs: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """For each task, its neighbours among the tasks of its direction: j is i's neighbour when no third task k
    lies inside or on the circle with diameter ij (|ik|^2 + |jk|^2 > |ij|^2; the Gabriel graph). On a lattice
    this keeps the steps along each axis and drops the diagonals (their other two corners lie on that circle),
    whatever the axes' spacings; it assumes no lattice."""
    sq = np.sum((points[:, None] - points[None]) ** 2, axis=2)
    out: list[list[int]] = []
    for i in range(len(points)):
        same = [j for j in range(len(points)) if j != i and dirs[j] == dirs[i]]
        out.append([j for j in same if all(sq[i, k] + sq[j, k] > sq[i, j] + TIE for k in same if k != j)])
    return out


def plan_chain(family: str, tasks: Sequence["TaskSpec"], chain: ChainConfig) -> dict:
    """The chain over `tasks`: {"anchors": [task ids], "waves": [[{"task_id", "source"}, ...], ...]}.

    Wave 0 holds the anchors (source None). A task joins wave k+1 when one of its grid neighbours of the same
    direction finished in waves <= k, and starts from the nearest such neighbour (ties: the earlier wave, then
    the earlier task), so each expert starts from a neighbour and the chains grow outwards along every axis.
    Neighbours are those of the Gabriel graph (`grid_neighbours`): on a line the tasks either side, on a lattice
    the tasks one step along each axis, on scattered contexts the pairs with no third task between them. If no
    task qualifies (an isolated group of tasks), the pending task nearest the finished ones goes next."""
    contexts = [t.context for t in tasks]
    points = unit_points(family, contexts)
    dirs = [direction(family, c) for c in contexts]
    wave_of: dict[int, int] = {}
    anchors: list[int] = []
    for d in sorted(set(dirs)):
        members = [i for i, x in enumerate(dirs) if x == d]
        anchors += [members[j] for j in choose_anchors(points[members], chain.anchors)]
    anchors.sort()
    for i in anchors:
        wave_of[i] = 0
    waves = [[{"task_id": tasks[i].task_id, "source": None} for i in anchors]]
    dist = np.linalg.norm(points[:, None] - points[None], axis=2)
    neighbours = grid_neighbours(points, dirs)
    while len(wave_of) < len(tasks):
        k = len(waves) - 1
        pending = [i for i in range(len(tasks)) if i not in wave_of]
        sources = {i: [j for j in neighbours[i] if j in wave_of] for i in pending}
        nxt = [i for i in pending if sources[i]]
        if not nxt:
            reach = {i: min(dist[i, j] for j in wave_of if dirs[j] == dirs[i]) for i in pending}
            closest = min(reach.values())
            nxt = [i for i in pending if reach[i] <= closest + TIE][:1]
            sources[nxt[0]] = [j for j in wave_of if dirs[j] == dirs[nxt[0]]]
        wave = []
        for i in nxt:
            best = min(dist[i, j] for j in sources[i])
            source = min((j for j in sources[i] if dist[i, j] <= best + TIE), key=lambda j: (wave_of[j], j))
            wave.append({"task_id": tasks[i].task_id, "source": tasks[source].task_id})
        for i in nxt:
            wave_of[i] = k + 1
        waves.append(wave)
    return {"format": CHAIN_FORMAT, "config": chain.to_dict(), "anchors": [tasks[i].task_id for i in anchors],
            "waves": waves}
