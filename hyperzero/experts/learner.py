"""EnsembleTD3: N independent TD3 agents with stacked weights (one baddbmm per layer for all members).

Independence: every loss is a sum over members of that member's own mean loss, Adam is elementwise,
and every random draw (init, exploration, replay indices, target noise) comes from the member's own
generator. Member i of an ensemble therefore follows the trajectory a solo agent with the same seed
follows, up to float rounding (checked by tests/experts/test_ensemble.py).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import numpy as np
import torch

from hyperzero.experts.config import TD3Config
from hyperzero.experts.networks import EnsembleActor, EnsembleTwinCritic


class MemberRNG:
    """Independent random streams of one member, all derived from its seed."""

    def __init__(self, seed: int, device: torch.device):
        init_ss, explore_ss, replay_ss, target_ss = np.random.SeedSequence(seed).spawn(4)
        self.init = torch.Generator().manual_seed(int(init_ss.generate_state(1, np.uint64)[0] >> 1))
        self.explore = np.random.Generator(np.random.PCG64(explore_ss))
        self.replay = np.random.Generator(np.random.PCG64(replay_ss))
        self.target = torch.Generator(device=device).manual_seed(int(target_ss.generate_state(1, np.uint64)[0] >> 1))

    def state(self) -> dict:
        return {"explore": self.explore.bit_generator.state, "replay": self.replay.bit_generator.state,
                "target": self.target.get_state()}

    def load_state(self, state: dict) -> None:
        self.explore.bit_generator.state = state["explore"]
        self.replay.bit_generator.state = state["replay"]
        self.target.set_state(state["target"])


def _adam(params, lr: float, eps: float, device: torch.device) -> torch.optim.Adam:
    # fused Adam is the fastest Adam on CPU and CUDA (docs/benchmarks-training.md) and is still elementwise.
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


class EnsembleTD3:
    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, seeds: Sequence[int],
                 device: torch.device | str = "cpu"):
        if len(seeds) < 1:
            raise ValueError("EnsembleTD3 needs at least one member seed")
        if config.batch_size is None:
            raise ValueError("TD3Config.batch_size is None: call config.resolved(family) first")
        self.cfg = config
        self.n = len(seeds)
        self.seeds = [int(s) for s in seeds]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.rngs = [MemberRNG(s, self.device) for s in self.seeds]
        h = config.hidden_sizes
        self.actor = EnsembleActor(self.n, obs_dim, act_dim, h, obs_norm=config.obs_norm)
        self.critic = EnsembleTwinCritic(self.n, obs_dim, act_dim, h, layer_norm=config.critic_layer_norm,
                                         obs_norm=config.obs_norm)
        for i, rng in enumerate(self.rngs):  # fixed draw order per member: actor then critic
            self.actor.reset_member(i, rng.init)
            self.critic.reset_member(i, rng.init)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        if config.obs_norm:  # targets normalise with the online statistics themselves, not a copy to keep in step
            self.actor_target.obs_norm, self.critic_target.obs_norm = self.actor.obs_norm, self.critic.obs_norm
        self.actor_opt = _adam(self.actor.parameters(), config.actor_lr, config.adam_eps, self.device)
        self.critic_opt = _adam(self.critic.parameters(), config.critic_lr, config.adam_eps, self.device)
        self.updates = 0  # critic updates so far

    # ------------------------------------------------------------------ acting
    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def act(self, obs: np.ndarray, std: float | None = None, fp32: bool = False) -> np.ndarray:
        """obs [N, B, S] -> actions [N, B, A] in [-1, 1] plus member-RNG Gaussian noise when std is given
        (then unclipped: the caller decides what reaches the env and what is stored). `fp32` acts without
        autocast, as the saved expert does (evaluation must score the policy that is saved)."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        with contextlib.nullcontext() if fp32 else self.autocast():
            a = self.actor(x).float().cpu().numpy()
        if std is not None and std > 0:
            noise = np.stack([rng.explore.normal(0.0, std, size=a.shape[1:]) for rng in self.rngs])
            a = a + noise.astype(np.float32)
        return a

    @torch.no_grad()
    def observe(self, obs: np.ndarray) -> None:
        """Fold observations [N, B, S] into the running statistics (`obs_norm`); every network, targets included,
        normalises with the same statistics, so the critic's target uses what the critic uses."""
        if self.actor.obs_norm is None:
            return
        norm = self.actor.obs_norm
        norm.observe(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        for name in ("mean", "var", "count"):  # the critic keeps one row per head: member i at rows 2i, 2i+1
            getattr(self.critic.obs_norm, name).copy_(getattr(norm, name).repeat_interleave(2, dim=0))

    def random_actions(self, batch: int = 1) -> np.ndarray:
        return np.stack([rng.explore.uniform(-1.0, 1.0, size=(batch, self.act_dim)) for rng in self.rngs]
                        ).astype(np.float32)

    # ------------------------------------------------------------------ learning
    def _to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}

    def update(self, batch: dict[str, np.ndarray], step: int, update_actor: bool) -> dict[str, np.ndarray]:
        """One critic step (and an actor + target step if `update_actor`) on a [N, B, ...] batch."""
        cfg = self.cfg
        b = self._to_device(batch)
        obs, act, rew, discount, next_obs = b["obs"], b["action"], b["reward"], b["discount"], b["next_obs"]
        with torch.no_grad():
            std = cfg.target_std(step)
            noise = torch.stack([torch.randn(act.shape[1:], generator=r.target, device=self.device)
                                 for r in self.rngs]) * std
            noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            with self.autocast():
                next_act = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
                target_q = self.critic_target(next_obs, next_act).float()  # [N, 2, B]
            y = rew + discount * target_q.min(dim=1).values  # [N, B]; rew, discount: n-step (StackedReplay.sample)
        with self.autocast():
            q = self.critic(obs, act).float()
        critic_loss = ((q - y.unsqueeze(1)) ** 2).mean(dim=-1).sum(dim=1)  # MSE(Q1)+MSE(Q2) per member [N]
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        self.critic_opt.step()
        self.updates += 1
        metrics = {"critic_loss": critic_loss.detach().cpu().numpy(), "q1_mean": q[:, 0].mean(-1).detach().cpu().numpy()}
        if update_actor:
            self.critic.requires_grad_(False)  # no critic weight gradients in the actor step
            with self.autocast():
                q1 = self.critic.q1(obs, self.actor(obs)).float()  # [N, B]
            actor_loss = -q1.mean(dim=-1)  # [N]
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.sum().backward()
            self.actor_opt.step()
            self.critic.requires_grad_(True)
            self._soft_update()
            metrics["actor_loss"] = actor_loss.detach().cpu().numpy()
        return metrics

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.cfg.tau
        for online, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)

    # ------------------------------------------------------------------ per-member state
    @staticmethod
    def _member_rows(module_name: str, i: int) -> slice:
        return slice(2 * i, 2 * i + 2) if module_name.startswith("critic") else slice(i, i + 1)

    def _modules(self):
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target}

    def member_state(self, i: int) -> dict:
        """Everything member i needs to resume alone: weights, Adam moments, RNG streams, counters."""
        nets = {}
        for name, mod in self._modules().items():
            rows = self._member_rows(name, i)
            nets[name] = {k: v[rows].detach().cpu().clone() for k, v in mod.state_dict().items()}
        opts = {}
        for name, opt in (("actor", self.actor_opt), ("critic", self.critic_opt)):
            rows = self._member_rows(name, i)
            sd = opt.state_dict()
            opts[name] = {
                "param_groups": sd["param_groups"],
                # clone the scalar `step` too: the optimizer increments it in place
                "state": {pid: {k: (v[rows].cpu().clone() if v.dim() > 0 else v.cpu().clone()) if torch.is_tensor(v) else v
                                for k, v in st.items()} for pid, st in sd["state"].items()},
            }
        return {"seed": self.seeds[i], "nets": nets, "optim": opts, "rng": self.rngs[i].state(),
                "updates": self.updates}

    def load_member_states(self, states: Sequence[dict | None]) -> None:
        """Load per-member states (None keeps that member's fresh initialisation)."""
        if len(states) != self.n:
            raise ValueError(f"got {len(states)} member states for an ensemble of {self.n}")
        present = [s for s in states if s is not None]
        if not present:
            return
        updates = {s["updates"] for s in present}
        if len(updates) != 1 or len(present) != self.n:
            raise ValueError("members of one ensemble must resume from the same step; the trainer groups "
                             "tasks by their checkpoint step (got a mix)")
        for i, s in enumerate(states):
            if s["seed"] != self.seeds[i]:
                raise ValueError(f"member {i} checkpoint has seed {s['seed']} but the run asks for {self.seeds[i]}; "
                                 "resume with the same --seed or delete the task's checkpoint.pt")
        with torch.no_grad():
            for name, mod in self._modules().items():
                sd = mod.state_dict()
                for k, v in sd.items():
                    for i, s in enumerate(states):
                        v[self._member_rows(name, i)].copy_(s["nets"][name][k])
        for name, opt in (("actor", self.actor_opt), ("critic", self.critic_opt)):
            sd = opt.state_dict()
            first = states[0]["optim"][name]
            new_state = {}
            for pid, st in first["state"].items():
                pid_key = pid if pid in sd["param_groups"][0]["params"] else int(pid)
                new_state[pid_key] = {}
                for k, v in st.items():
                    if torch.is_tensor(v) and v.dim() > 0:
                        new_state[pid_key][k] = torch.cat([s["optim"][name]["state"][pid][k] for s in states]
                                                          ).to(self.device)
                    else:
                        new_state[pid_key][k] = v.clone() if torch.is_tensor(v) else v
            opt.load_state_dict({"state": new_state, "param_groups": sd["param_groups"]})
        for rng, s in zip(self.rngs, states):
            rng.load_state(s["rng"])
        self.updates = int(states[0]["updates"])

    @torch.no_grad()
    def load_member_networks(self, i: int, networks: dict) -> None:
        """Set member i's actor and critic (and their targets) to `networks` (member_networks' format)."""
        for name, (online, target) in {"actor": (self.actor, self.actor_target),
                                       "critic": (self.critic, self.critic_target)}.items():
            rows = self._member_rows(name, i)
            for mod in (online, target):
                for k, v in mod.state_dict().items():
                    v[rows].copy_(networks[name][k])

    def member_networks(self, i: int) -> dict:
        """Member i's online actor and critic weights (what expert.pt stores)."""
        return {name: {k: v[self._member_rows(name, i)].detach().cpu().clone() for k, v in mod.state_dict().items()}
                for name, mod in (("actor", self.actor), ("critic", self.critic))}
