"""Train one ensemble of experts (one member per task, each with its own env and replay buffer) with any solver.

The solver (TD3, SAC, ...) is reached only through its builder (hyperzero.experts.solvers), picked by the
config's class.

Resume semantics: checkpoints are written only at episode boundaries (`checkpoint_every` must be a
multiple of the episode length), so a checkpoint never needs the simulator's mid-episode state.
Every episode is reset with a seed derived from (expert seed, episode index); together with the saved
weights, Adam moments, replay rows, RNG streams and counters, a resumed run continues exactly as the
uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hyperzero.experts.replay import StackedReplay
from hyperzero.experts.solvers import SolverConfig, solver_for, solver_of
from hyperzero.utils.curves import CurveLogger
from hyperzero.utils.io import atomic_torch_save, atomic_write_json, load_torch, read_json
from hyperzero.utils.torch_utils import resolve_device, resolve_precision

CHECKPOINT = "checkpoint.pt"
EXPERT = "expert.pt"
SUMMARY = "summary.json"
FORMAT_VERSION = 1
_TRAIN_EPISODE, _EVAL_EPISODE = 0, 1


@dataclass
class TaskSpec:
    task_id: str  # context_id(context): the task's folder name
    context: dict  # the full, validated context
    seed: int  # the expert's seed
    dir: Path  # out_dir / task_id
    warm_start: Path | None = None  # an expert.pt whose actor and critic initialise this one (a gate retry), or a
    #   finished expert's checkpoint.pt, whose networks, targets, obs statistics and Adam moments do (a chain)


def episode_seed(seed: int, kind: int, index: int) -> int:
    """Reset seed of episode `index` (train or eval stream): disjoint streams, fixed across resumes."""
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0])


def is_finished(task_dir: Path) -> bool:
    path = Path(task_dir) / SUMMARY
    if not path.exists():
        return False
    try:
        return bool(read_json(path).get("finished"))
    except (ValueError, OSError):
        return False


def checkpoint_step(task_dir: Path) -> int:
    """Env step of the task's checkpoint (0 without one)."""
    path = Path(task_dir) / CHECKPOINT
    if not path.exists():
        return 0
    return int(load_torch(path, map_location="cpu", weights_only=True, mmap=True)["step"])


def _make_env(family: str, context: dict, max_episode_steps: int | None):
    from hyperzero.envs import make

    env = make(family, context=context)
    if max_episode_steps is not None:
        import gymnasium

        env = gymnasium.wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)
    return env


def _np_state_to_torch(replay_state: dict) -> dict:
    return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in replay_state.items()}


def _torch_state_to_np(replay_state: dict) -> dict:
    return {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in replay_state.items()}


class GroupTrainer:
    """Runs N tasks of one family in lockstep as one stacked ensemble of the config's solver."""

    def __init__(self, family: str, tasks: Sequence[TaskSpec], config: SolverConfig, progress: bool = True,
                 position: int = 0, fresh: bool = False):
        from hyperzero.envs import get_family

        if not tasks:
            raise ValueError("GroupTrainer needs at least one task")
        self.family = family
        self.fam = get_family(family)
        self.tasks = list(tasks)
        self.solver = solver_for(config)
        self.cfg = cfg = config.resolved(family)
        self.n = len(tasks)
        self.ep_len = cfg.max_episode_steps or self.fam.episode_steps
        if cfg.checkpoint_every and cfg.checkpoint_every % self.ep_len:
            raise ValueError(f"checkpoint_every={cfg.checkpoint_every} must be a multiple of the episode length "
                             f"{self.ep_len} (checkpoints are taken at episode ends); e.g. --checkpoint-every "
                             f"{max(1, round(cfg.checkpoint_every / self.ep_len)) * self.ep_len}")
        self.progress, self.position = progress, position
        self.device = resolve_device(cfg.device)
        self.cfg = cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, self.device))
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.agent = self.solver.make_learner(self.fam.obs_dim, self.fam.act_dim, cfg, [t.seed for t in tasks],
                                              self.device)
        if cfg.share_experience:
            _check_relabelling(self.fam)
        self.envs = [_make_env(family, t.context, cfg.max_episode_steps) for t in tasks]
        # shared experience relabels rewards from the dm_control task's physics readings (share_experience only)
        self.reward_tasks = [env.unwrapped.dm_env.task for env in self.envs] if cfg.share_experience else None
        self.pools = experience_pools(family, [t.context for t in tasks]) if cfg.share_experience else None
        self.relabel = [t.reward_from_readings for t in self.reward_tasks] if self.pools else None
        self.replay = StackedReplay(self.n, min(cfg.replay_capacity, cfg.train_steps), self.fam.obs_dim,
                                    self.fam.act_dim, n_readings=len(self.reward_tasks[0].READINGS) if self.pools else 0)
        self.eval_envs = None
        self.step = 0
        self.episodes = np.zeros(self.n, np.int64)  # train episodes started, per member
        self.last_eval: list[dict | None] = [None] * self.n
        self.cpu_seconds_before = 0.0  # process CPU time of earlier invocations (from the checkpoint)
        if fresh:  # from step 0 whatever checkpoints exist (they are overwritten by the first new one)
            self._warm_start()
        else:
            self._resume()
        self._cpu_start = time.process_time()
        for t in tasks:
            t.dir.mkdir(parents=True, exist_ok=True)
        self.loggers = [CurveLogger(t.dir, resume_step=self.step) for t in tasks]

    # ------------------------------------------------------------------ checkpoints
    def _warm_start(self) -> None:
        """Members with a warm_start expert begin from its actor and critic (and targets), not a fresh init; from
        a checkpoint.pt (a chain's source), from every network, target and Adam moment it holds."""
        moments: list[dict | None] = [None] * self.n
        for i, t in enumerate(self.tasks):
            if t.warm_start is None:
                continue
            if Path(t.warm_start).name == CHECKPOINT:
                moments[i] = self._warm_from_checkpoint(i, Path(t.warm_start))
                continue
            payload = load_torch(t.warm_start, map_location="cpu", weights_only=True)
            if solver_of(payload).name != self.solver.name:
                raise ValueError(f"warm start {t.warm_start} is a {solver_of(payload).name} expert, this run trains "
                                 f"{self.solver.name}; warm-start from an expert of the same solver")
            if list(payload["hidden_sizes"]) != list(self.cfg.hidden_sizes):
                raise ValueError(f"warm start {t.warm_start} has hidden sizes {payload['hidden_sizes']}, this run "
                                 f"{list(self.cfg.hidden_sizes)}")
            if payload["config"].get("obs_norm", False) != self.cfg.obs_norm:
                raise ValueError(f"warm start {t.warm_start} was trained with obs_norm="
                                 f"{payload['config'].get('obs_norm', False)}, this run asks for {self.cfg.obs_norm}")
            self.agent.load_member_networks(i, payload)
        if any(m is not None for m in moments):
            _load_warm_moments(self.agent, moments)

    def _warm_from_checkpoint(self, i: int, path: Path) -> dict:
        """Set member i's networks (targets and obs statistics included) from a finished expert's final
        checkpoint; returns its optimiser states, loaded once every member's are known. Its replay, RNG streams
        and counters are not taken: the member collects its own task's experience with its own seed."""
        if not path.exists():
            raise ValueError(f"warm start {path} does not exist: a chained expert starts from its source's final "
                             f"checkpoint.pt, which a finished expert keeps; retrain the source (delete its folder "
                             f"and rerun) or turn experts.chain off")
        state = load_torch(path, map_location="cpu", weights_only=True)
        if solver_of(state).name != self.solver.name:
            raise ValueError(f"warm start {path} is a {solver_of(state).name} checkpoint, this run trains "
                             f"{self.solver.name}; warm-start from an expert of the same solver")
        for key in ("hidden_sizes", "obs_norm", "critic_layer_norm"):
            old = state["config"].get(key, self.solver.config_class.__dataclass_fields__[key].default)
            if (list(old) if key == "hidden_sizes" else old) != (
                    list(self.cfg.hidden_sizes) if key == "hidden_sizes" else getattr(self.cfg, key)):
                raise ValueError(f"warm start {path} was trained with {key}={old}, this run asks for "
                                 f"{getattr(self.cfg, key)}; chain only experts of one architecture")
        agent = self.agent
        with torch.no_grad():
            for name, mod in agent._modules().items():
                rows = agent._member_rows(name, i)
                for k, v in mod.state_dict().items():
                    v[rows].copy_(state["agent"]["nets"][name][k])
        return state["agent"]["optim"]

    def _resume(self) -> None:
        states = []
        for t in self.tasks:
            path = t.dir / CHECKPOINT
            states.append(load_torch(path, map_location="cpu", weights_only=True) if path.exists() else None)
        if all(s is None for s in states):
            self._warm_start()
            return
        if any(s is None for s in states) or len({s["step"] for s in states}) != 1:
            raise ValueError("tasks of one ensemble must all resume from the same checkpoint step; "
                             "train_experts groups tasks by checkpoint step")
        for t, s in zip(self.tasks, states):
            if s.get("format") != FORMAT_VERSION:
                raise ValueError(f"{t.dir / CHECKPOINT}: unknown checkpoint format {s.get('format')}; delete it to retrain")
            if solver_of(s).name != self.solver.name:
                raise ValueError(f"{t.dir / CHECKPOINT} was trained by solver {solver_of(s).name} but this run asks "
                                 f"for {self.solver.name}; rerun with the same experts.solver or delete the checkpoint")
            old = s["config"]
            for key in self.solver.resume_keys:
                if old.get(key, self.solver.config_class.__dataclass_fields__[key].default) != self.cfg.to_dict()[key]:
                    raise ValueError(f"{t.dir / CHECKPOINT} was trained with {key}={old[key]} but this run asks for "
                                     f"{self.cfg.to_dict()[key]}; rerun with the same setting or delete the checkpoint")
        self.agent.load_member_states([s["agent"] for s in states])
        for i, s in enumerate(states):
            self.replay.load_member_state(i, _torch_state_to_np(s["replay"]))
        self.step = int(states[0]["step"])
        self.episodes = np.array([int(s["episodes"]) for s in states], np.int64)
        self.last_eval = [s.get("last_eval") for s in states]
        self.cpu_seconds_before = float(states[0].get("cpu_seconds", 0.0))

    def cpu_seconds(self) -> float:
        """CPU time this ensemble's process has spent on it, over resumes: unlike wall time, not inflated when
        other work shares the cores."""
        return self.cpu_seconds_before + time.process_time() - self._cpu_start

    def save_checkpoint(self) -> None:
        cpu_seconds = self.cpu_seconds()
        for i, t in enumerate(self.tasks):
            atomic_torch_save({
                "format": FORMAT_VERSION, "step": self.step, "episodes": int(self.episodes[i]),
                "family": self.family, "task_id": t.task_id, "context": t.context, "config": self.cfg.to_dict(),
                "agent": self.agent.member_state(i), "replay": _np_state_to_torch(self.replay.member_state(i)),
                "last_eval": self.last_eval[i], "cpu_seconds": cpu_seconds, **self.solver.tag(),
            }, t.dir / CHECKPOINT)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, episodes: int | None = None) -> list[dict]:
        """Deterministic episodes on separate env instances, reset with the eval seed stream, acting in fp32
        whatever the training precision: the gate judges, and the dataset uses, the saved fp32 expert."""
        episodes = episodes or self.cfg.eval_episodes
        if self.eval_envs is None:
            self.eval_envs = [_make_env(self.family, t.context, self.cfg.max_episode_steps) for t in self.tasks]
        returns = np.zeros((self.n, episodes))
        for k in range(episodes):
            obs = np.stack([env.reset(seed=episode_seed(t.seed, _EVAL_EPISODE, k))[0]
                            for env, t in zip(self.eval_envs, self.tasks)])
            done = np.zeros(self.n, bool)
            while not done.all():
                act = self.agent.act(obs[:, None], fp32=True)[:, 0]  # the saved expert.pt acts in fp32
                for i, env in enumerate(self.eval_envs):
                    if done[i]:
                        continue
                    obs[i], r, term, trunc, _ = env.step(act[i])
                    returns[i, k] += r
                    done[i] = term or trunc
        return [{"step": self.step, "return_mean": float(returns[i].mean()), "return_std": float(returns[i].std()),
                 "returns": returns[i].tolist(), "acted": "fp32"} for i in range(self.n)]

    # ------------------------------------------------------------------ training
    def _reset_member(self, i: int) -> np.ndarray:
        seed = episode_seed(self.tasks[i].seed, _TRAIN_EPISODE, int(self.episodes[i]))
        self.episodes[i] += 1
        return self.envs[i].reset(seed=seed)[0]

    def train(self) -> list[dict]:
        from tqdm import tqdm

        cfg = self.cfg
        obs = np.zeros((self.n, self.fam.obs_dim), np.float32)
        need_reset = np.ones(self.n, bool)
        ep_return = np.zeros(self.n)
        ep_metrics: dict[str, list[np.ndarray]] = {}
        t0, s0 = time.perf_counter(), self.step
        bar = tqdm(total=cfg.train_steps, initial=self.step, disable=not self.progress, position=self.position,
                   desc=f"{self.family} x{self.n}", unit="step", dynamic_ncols=True, leave=True)
        while self.step < cfg.train_steps:
            for i in np.flatnonzero(need_reset):
                obs[i] = self._reset_member(i)
                ep_return[i] = 0.0
            need_reset[:] = False
            self.agent.observe(obs[:, None])  # no-op without obs_norm
            if self.step < cfg.random_steps:
                action = self.agent.random_actions()[:, 0]
            else:
                action = self.agent.explore(obs[:, None], self.step)[:, 0]
            env_action = np.clip(action, -1.0, 1.0)
            # TD3's noisy actions can leave [-1, 1] (clip_stored_actions); a squashed policy's never do
            stored = env_action if getattr(cfg, "clip_stored_actions", True) else action
            next_obs = np.empty_like(obs)
            reward = np.zeros(self.n, np.float32)
            not_done = np.ones(self.n, np.float32)
            readings = np.zeros((self.n, self.replay.readings.shape[-1]), np.float32) if self.pools else None
            for i, env in enumerate(self.envs):
                next_obs[i], reward[i], term, trunc, _ = env.step(env_action[i])
                if term or (trunc and not cfg.bootstrap_on_truncation):
                    not_done[i] = 0.0
                need_reset[i] = term or trunc
                if self.pools:
                    readings[i] = self.reward_tasks[i].reward_readings(env.unwrapped.physics)
            self.replay.add(obs, stored, reward, not_done, next_obs, episode_end=need_reset, readings=readings)
            ep_return += reward
            obs = next_obs
            self.step += 1
            if self.step >= cfg.seed_steps and self.step % cfg.critic_update_every == 0:
                batch = self.replay.sample(cfg.batch_size, [r.replay for r in self.agent.rngs], cfg.gamma, cfg.n_step,
                                           pools=self.pools, relabel=self.relabel)
                metrics = self.agent.update(batch, self.step, update_actor=self.step % cfg.actor_update_every == 0)
                for k, v in metrics.items():
                    ep_metrics.setdefault(k, []).append(v)
            bar.update(1)
            # The final evaluation (quality gate) is the one at step == train_steps.
            evaluated = (bool(cfg.eval_every) and self.step % cfg.eval_every == 0) or self.step == cfg.train_steps
            if evaluated:
                self.last_eval = self.evaluate()
            if need_reset.any() or evaluated:
                elapsed = max(time.perf_counter() - t0, 1e-9)
                rate = (self.step - s0) * self.n / elapsed
                for i in range(self.n):
                    row = {"agent_steps_per_s": rate, **self.agent.curve_row(self.step)}
                    if need_reset[i]:
                        row["train/episode_return"] = float(ep_return[i])
                        for k, v in ep_metrics.items():
                            row[f"train/{k}"] = float(np.mean([x[i] for x in v]))
                    if evaluated:
                        row["eval/return_mean"] = self.last_eval[i]["return_mean"]
                        row["eval/return_std"] = self.last_eval[i]["return_std"]
                    self.loggers[i].log(self.step, row)
                if need_reset.any():
                    ep_metrics = {}
                shown = [e["return_mean"] for e in self.last_eval if e is not None]
                bar.set_postfix_str(f"{rate:.0f} agent-steps/s" + (
                    " eval " + ",".join(f"{r:.0f}" for r in shown) if shown else ""), refresh=False)
            at_boundary = need_reset.all()
            periodic = bool(cfg.checkpoint_every) and self.step % cfg.checkpoint_every == 0 and at_boundary
            if periodic or self.step == cfg.train_steps:  # the last one lets a kill while writing skip retraining
                self.save_checkpoint()
        bar.close()
        if any(e is None or e["step"] != self.step or e.get("acted") != "fp32" for e in self.last_eval):
            # resumed from the final checkpoint without its evaluation, or with one that acted under autocast
            # (checkpoints written before evaluation acted in fp32): evaluate the policy that is saved
            self.last_eval = self.evaluate()
        final = self.last_eval
        summaries = []
        for i, t in enumerate(self.tasks):
            self.loggers[i].close()
            summaries.append(self._write_expert(i, final[i]))
        for env in self.envs + (self.eval_envs or []):
            env.close()
        return summaries

    def _write_expert(self, i: int, final: dict) -> dict:
        from hyperzero.experts.gate import do_nothing_return

        cfg, t = self.cfg, self.tasks[i]
        flagged = cfg.quality_threshold is not None and final["return_mean"] < cfg.quality_threshold
        floor = do_nothing_return(self.family, t.context, [episode_seed(t.seed, _EVAL_EPISODE, k)
                                                            for k in range(len(final["returns"]))],
                                  cfg.max_episode_steps)
        atomic_torch_save({
            "format": FORMAT_VERSION, "family": self.family, "task_id": t.task_id, "context": t.context,
            "obs_dim": self.fam.obs_dim, "act_dim": self.fam.act_dim, "hidden_sizes": list(cfg.hidden_sizes),
            "train_steps": self.step, "seed": t.seed, "config": cfg.to_dict(), **self.solver.tag(),
            **self.agent.member_networks(i),
        }, t.dir / EXPERT)
        summary = {
            "task_id": t.task_id, "family": self.family, "context": t.context, "train_steps": self.step,
            "seed": t.seed, "eval_return_mean": final["return_mean"], "eval_return_std": final["return_std"],
            "floor_return": floor, "warm_start": str(t.warm_start) if t.warm_start else None,
            "eval_returns": final["returns"], "eval_episodes": len(final["returns"]),
            "quality_threshold": cfg.quality_threshold, "flagged": bool(flagged), "finished": True,
            "precision": cfg.precision, "config": cfg.to_dict(),
            # this expert's share of its ensemble's CPU time (training, evaluation, floor), over resumes
            "cpu_seconds": round(self.cpu_seconds() / self.n, 1), "ensemble_size": self.n, **self.solver.tag(),
        }
        atomic_write_json(t.dir / SUMMARY, summary)  # written last: its presence means the expert is complete
        return summary


def _load_warm_moments(agent, moments: Sequence[dict | None]) -> None:
    """Adam moments of warm-started members (rows of a source's checkpoint) into the ensemble's fresh optimisers;
    members without one keep zero moments. The step count, one per stacked parameter, is the largest of the
    sources': their moments are warm, so no bias correction should inflate the first updates."""
    for name, opt in agent._optimizers().items():
        params = [p for group in opt.param_groups for p in group["params"]]
        pids = [pid for group in opt.state_dict()["param_groups"] for pid in group["params"]]
        new_state = {}
        for p, pid in zip(params, pids):
            given = [(i, m[name]["state"].get(pid, m[name]["state"].get(str(pid)))) for i, m in enumerate(moments)
                     if m is not None]
            given = [(i, st) for i, st in given if st]
            if not given:
                continue
            entry = {}
            for k, v in given[0][1].items():
                if torch.is_tensor(v) and v.dim() > 0:
                    full = torch.zeros_like(p, dtype=v.dtype)
                    for i, st in given:
                        full[agent._member_rows(name, i)] = st[k].to(full.device)
                    entry[k] = full
                elif torch.is_tensor(v):
                    entry[k] = max((st[k] for _, st in given), key=float).clone()
                else:
                    entry[k] = max(st[k] for _, st in given)
            new_state[pid] = entry
        if new_state:
            sd = opt.state_dict()
            opt.load_state_dict({"state": new_state, "param_groups": sd["param_groups"]})


def _check_relabelling(fam) -> None:
    """share_experience needs a dm_control family whose task relabels rewards (READINGS, reward_readings,
    reward_from_readings, as the shipped families' tasks have); a ValueError names the family otherwise."""
    if getattr(fam, "kind", "dm_control") != "dm_control":
        raise ValueError(f"share_experience relabels rewards from dm_control physics readings, but family {fam.name!r} "
                         f"is built from a Gymnasium env; train its experts without share_experience")
    task = fam.make_task(fam.context_space.validate(None), value_at_margin=0.1, random=0)
    missing = [a for a in ("READINGS", "reward_readings", "reward_from_readings") if not hasattr(task, a)]
    if missing:
        raise ValueError(f"share_experience relabels rewards, but the task of family {fam.name!r} lacks {missing} "
                         f"(see hyperzero/envs/cheetah.py for how a task defines them); train without share_experience")


def dynamics_key(family: str):
    """context -> a sortable key equal exactly for contexts with the same dynamics (every feature but the reward's)."""
    from hyperzero.envs import get_family

    reward_features = set(get_family(family).context_space.names_of_kind("reward"))
    return lambda ctx: tuple(sorted((k, v) for k, v in ctx.items() if k not in reward_features))


def experience_pools(family: str, contexts: Sequence[dict]) -> list[list[int]]:
    """For shared experience: pools[i] lists the members whose dynamics equal member i's, so only transitions of
    the same MDP dynamics are relabelled and shared."""
    key = dynamics_key(family)
    keys = [key(ctx) for ctx in contexts]
    return [[j for j, other in enumerate(keys) if other == mine] for mine in keys]


def train_group(family: str, tasks: Sequence[TaskSpec], config: SolverConfig, progress: bool = True,
                position: int = 0, fresh: bool = False) -> list[dict]:
    """Train (or resume) one ensemble; returns the members' summaries. `fresh` starts from step 0 even where
    checkpoints exist (the sweep's choice when its members' checkpoints are at different steps)."""
    return GroupTrainer(family, tasks, config, progress=progress, position=position, fresh=fresh).train()


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
