"""The expert quality gate: does each expert score what its task can score?

An expert passes when its deterministic evaluation return reaches `ceiling_fraction` of the family's ceiling
(every step at the maximum reward), or when, floor-corrected, it reaches `neighbour_fraction` of the best of
its `neighbours` nearest tasks (in normalised context space) that vouch for it, i.e. that reached
`vouch_fraction` of the ceiling: a task a close neighbour solves is one this expert should solve too, and
neighbours that all failed to learn vouch for nothing. The floor is a do-nothing policy (zero actions) on
the same evaluation episodes.

Examples on cheetah-run (ceiling 1000, floor ~100 = standing still): +3 at 110 beside +2/+4 at 950 fails; a
hard +8 at 460 passes beside +7 at 600. Walker experts that never learned to walk (40-420) all fail: none
of them vouches for another.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from hyperzero.experts.solvers import SolverConfig


@dataclass(frozen=True)
class GateConfig:
    enabled: bool = True  # false: no verdicts, no retries (only TD3Config.quality_threshold flags)
    ceiling_fraction: float = 0.9  # a return >= this x the family's ceiling passes outright
    neighbour_fraction: float = 0.7  # else (R - floor) must reach this x (best vouching neighbour - floor)
    vouch_fraction: float = 0.5  # only neighbours that reached this x the ceiling set that bar
    neighbours: int = 4  # how many nearest tasks (normalised context distance) an expert is compared with
    max_retries: int = 1  # retrained attempts of a failed expert (warm start from the nearest passing expert, new seed)
    retry_steps: int | None = None  # env steps of a retry; None = the expert's train_steps

    def retry_config(self, config: "SolverConfig", warm: bool) -> "SolverConfig":
        """A retry's config: its own budget; a warm-started one acts with its (neighbour's) policy from the
        first step instead of uniform-random actions."""
        import dataclasses

        return dataclasses.replace(config, train_steps=self.retry_steps or config.train_steps,
                                   random_steps=0 if warm else config.random_steps)

    def validate(self) -> None:
        if not all(0 < x <= 1 for x in (self.ceiling_fraction, self.neighbour_fraction, self.vouch_fraction)):
            raise ValueError("gate: ceiling_fraction, neighbour_fraction and vouch_fraction must be in (0, 1] (got "
                             f"{self.ceiling_fraction}, {self.neighbour_fraction}, {self.vouch_fraction})")
        if self.retry_steps is not None and self.retry_steps < 1:
            raise ValueError(f"gate: retry_steps must be >= 1 or null (got {self.retry_steps})")
        if self.neighbours < 1 or self.max_retries < 0:
            raise ValueError(f"gate: neighbours must be >= 1 and max_retries >= 0 (got {self.neighbours}, "
                             f"{self.max_retries})")


@dataclass
class Verdict:
    task_id: str
    passed: bool
    reason: str
    return_mean: float
    floor: float
    reference: float | None  # best neighbouring return (None when the ceiling test decided)
    reference_task: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def do_nothing_return(family: str, context: Mapping[str, float], seeds: Sequence[int],
                      max_episode_steps: int | None = None) -> float:
    """Mean return of zero actions on the given episode seeds: the floor every expert must clear."""
    from hyperzero.envs import get_family
    from hyperzero.envs.rollout import rollout_returns, zero_action_policy

    act = zero_action_policy(get_family(family).act_dim)
    return float(np.mean(rollout_returns(family, dict(context), act, seeds, max_steps=max_episode_steps)))


def _points(family: str, summaries: Sequence[Mapping]) -> np.ndarray:
    """The tasks' varied context features, normalised to [-1, 1] by the family's bounds: [n_tasks, n_features]."""
    from hyperzero.envs import get_family

    space = get_family(family).context_space
    names = [n for n in space.names if len({s["context"].get(n) for s in summaries}) > 1] or space.names[:1]
    return np.stack([space.normalize(space.to_vector(s["context"], names), names) for s in summaries])


def warm_start_source(family: str, summaries: Sequence[Mapping], verdicts: Sequence[Verdict], i: int) -> str | None:
    """The task a retry of task i starts from: the nearest task that passed the gate (ties: the higher return),
    among those whose signed features (a target speed's direction) have task i's signs; None: retrain from scratch.

    Not simply the best neighbour: on cheetah the best of the 4 nearest speeds of -3 can be +1, a forward gait
    that is a worse start for running backwards than -2's; and when no forward task passed, a backward gait is
    no start for +1 at all."""
    from hyperzero.envs import get_family

    points = _points(family, summaries)
    dist = np.linalg.norm(points - points[i], axis=1)
    signed = [f.name for f in get_family(family).features if f.nonzero]

    def same_direction(j: int) -> bool:
        return all(np.sign(summaries[j]["context"][n]) == np.sign(summaries[i]["context"][n]) for n in signed)

    passing = [j for j, v in enumerate(verdicts) if v.passed and j != i and same_direction(j)]
    if not passing:
        return None
    best = min(passing, key=lambda j: (dist[j], -float(summaries[j]["eval_return_mean"])))
    return summaries[best]["task_id"]


def judge(family: str, summaries: Sequence[Mapping], gate: GateConfig) -> list[Verdict]:
    """One verdict per summary (summaries need task_id, context, eval_return_mean, floor_return); the rule is in
    the module docstring. Only neighbours that learned their own task vouch: one that did not shows nothing about
    what a nearby task can score, so a region where every expert failed alike fails as a whole."""
    from hyperzero.envs import get_family

    fam = get_family(family)
    short = summaries[0].get("config", {}).get("max_episode_steps") if summaries else None
    steps = short or fam.episode_steps
    if getattr(fam, "max_reward", None) is None:  # a family of your own may not know its reward's ceiling
        why = (f"not judged: family {family!r} declares no max_reward, so there is no ceiling to judge an expert "
               f"against (set max_reward and min_reward on the family to gate its experts)")
        return [Verdict(s["task_id"], True, why, float(s["eval_return_mean"]), float(s.get("floor_return", 0.0)),
                        None, None) for s in summaries]
    points = _points(family, summaries)
    returns = np.array([float(s["eval_return_mean"]) for s in summaries])
    ceiling = fam.max_reward * steps
    # the gate's fractions are of the scale [base, ceiling]: base = every step at the lowest reward (0 for the
    # shipped families, whose rewards are in [0, 1], so a fraction of the ceiling is a fraction of the scale)
    base = (getattr(fam, "min_reward", None) or 0.0) * steps

    def at(fraction: float) -> float:
        return base + fraction * (ceiling - base)

    verdicts = []
    for i, s in enumerate(summaries):
        floor = float(s.get("floor_return", 0.0))
        r = returns[i]
        if r >= at(gate.ceiling_fraction):
            verdicts.append(Verdict(s["task_id"], True, f"{r:.0f} >= {_of_ceiling(gate.ceiling_fraction, ceiling, base)}",
                                    float(r), floor, None, None))
            continue
        dist = np.linalg.norm(points - points[i], axis=1)
        dist[i] = np.inf
        near = [j for j in np.argsort(dist, kind="stable")[: gate.neighbours] if np.isfinite(dist[j])]
        vouching = [j for j in near if returns[j] >= at(gate.vouch_fraction)]
        if not vouching:
            what = (f"none of its {len(near)} nearest tasks reached {_of_ceiling(gate.vouch_fraction, None, base)}, "
                    "so no neighbour vouches for a lower bar" if near else "no neighbouring task to compare with")
            verdicts.append(Verdict(s["task_id"], False, f"{r:.0f} < {_of_ceiling(gate.ceiling_fraction, ceiling, base)} "
                                    f"and {what}", float(r), floor, None, None))
            continue
        best = max(vouching, key=lambda j: returns[j])
        ref = returns[best]
        need = floor + gate.neighbour_fraction * (ref - floor)
        ok = r >= need
        why = (f"{r:.0f} {'>=' if ok else '<'} {need:.0f} = floor {floor:.0f} + {gate.neighbour_fraction:g} x "
               f"(neighbour {summaries[best]['task_id']} {ref:.0f} - floor)")
        verdicts.append(Verdict(s["task_id"], bool(ok), why, float(r), floor, float(ref), summaries[best]["task_id"]))
    return verdicts


def _of_ceiling(fraction: float, ceiling: float | None, base: float) -> str:
    """"0.9 x ceiling 1000" (the shipped families: base 0), or "0.9 of the way from base -3255 to ceiling 0"."""
    if base == 0.0:
        return f"{fraction:g} x ceiling" + (f" {ceiling:.0f}" if ceiling is not None else "")
    return f"{fraction:g} of the way from {base:.0f} to the ceiling" + (f" {ceiling:.0f}" if ceiling is not None else "")
