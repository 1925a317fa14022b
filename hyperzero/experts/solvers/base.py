"""What every expert solver provides (the builder) and the stacked-ensemble machinery they share.

A solver is a package `hyperzero/experts/solvers/<name>/` split as acme splits an agent:

* `config.py`: a dataclass of its settings: besides its own, what `SolverConfig` lists (the fields the generic
  trainer and sweep read, `resolved`, `validate`, `to_dict`, `memory_bytes`, a `solver` class attribute) and
  a `from_dict` classmethod.
* `networks.py`: its stacked networks (`hyperzero.experts.networks` has the stacked layers and twin critic).
* `learner.py`: a `StackedLearner` that trains N independent members as one stack of [N, ...] parameters.
* `builder.py`: a `SolverBuilder`, the only object the trainer, sweep and `load_expert` talk to.

plus one line in `hyperzero.experts.solvers.SOLVERS`.
"""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np
import torch
from torch import nn

# Per-family overrides every solver applies (the authors' `cfgs/task/*.yaml`): walker uses batch 512.
FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "walker-walk": {"batch_size": 512},
}

PRECISIONS = ("auto", "fp32", "bf16")
# Bounds that keep a typo (1e9 for 1e3) from asking the allocator for petabytes: far above any sensible setting.
MAX_WIDTH, MAX_LAYERS = 65_536, 64
MAX_BATCH = 1 << 20
MAX_TRAIN_STEPS = 10 ** 10
MAX_EVAL_EPISODES = 100_000
MAX_EPISODE_STEPS = 10 ** 7
MAX_N_STEP = 1_000


class SolverConfigBase:
    """The methods every solver config shares: a dataclass `class XConfig(SolverConfigBase)` with the fields
    `SolverConfig` lists adds only its own fields and, in `check_own`, their range checks."""

    def resolved(self, family: str):
        """A copy with the family defaults filled in, validated."""
        import dataclasses

        cfg = dataclasses.replace(self, hidden_sizes=tuple(int(h) for h in self.hidden_sizes))  # type: ignore
        for key, value in FAMILY_DEFAULTS.get(family, {}).items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.batch_size is None:
            cfg.batch_size = 256
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Types, then ranges and resource bounds; a ValueError names the field (`<Class>.<field>=<value>`)."""
        from hyperzero.utils.typed import check_fields, short_repr

        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"{type(self).__name__}.{key}={short_repr(getattr(self, key))}: {msg}")

        s: Any = self
        check_fields(self)  # types first (TD3Config(train_steps="10") is refused naming the field), then ranges
        need(s.train_steps > 0, "train_steps", "must be > 0; pass --train-steps N with N >= 1")
        need(s.train_steps <= MAX_TRAIN_STEPS, "train_steps", f"must be <= {MAX_TRAIN_STEPS:.0e}")
        need(s.seed_steps >= 0, "seed_steps", "must be >= 0")
        need(s.random_steps >= 0, "random_steps", "must be >= 0")
        need(s.critic_update_every >= 1, "critic_update_every", "must be >= 1")
        need(s.actor_update_every >= 1, "actor_update_every", "must be >= 1")
        need(len(s.hidden_sizes) >= 1 and all(h > 0 for h in s.hidden_sizes), "hidden_sizes",
             "must be positive widths, e.g. [256, 256]")
        need(len(s.hidden_sizes) <= MAX_LAYERS and all(h <= MAX_WIDTH for h in s.hidden_sizes), "hidden_sizes",
             f"at most {MAX_LAYERS} layers of at most {MAX_WIDTH} units each")
        need(s.actor_lr > 0, "actor_lr", "must be > 0")
        need(s.critic_lr > 0, "critic_lr", "must be > 0")
        need(s.adam_eps > 0, "adam_eps", "must be > 0")
        need(0 < s.tau <= 1, "tau", "must be in (0, 1]")
        need(0 <= s.gamma < 1, "gamma", "must be in [0, 1)")
        need(s.batch_size is None or s.batch_size > 0, "batch_size", "must be > 0")
        need(s.batch_size is None or s.batch_size <= MAX_BATCH, "batch_size",
             f"must be <= {MAX_BATCH} (samples per member and gradient step)")
        need(s.replay_capacity > 0, "replay_capacity", "must be > 0")
        self.check_own(need)
        need(s.eval_every >= 0, "eval_every", "must be >= 0 (0 = evaluate only at the end)")
        need(1 <= s.eval_episodes <= MAX_EVAL_EPISODES, "eval_episodes", f"must be in 1 .. {MAX_EVAL_EPISODES}")
        need(s.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0 = only at the end)")
        need(s.max_episode_steps is None or 0 < s.max_episode_steps <= MAX_EPISODE_STEPS, "max_episode_steps",
             f"must be in 1 .. {MAX_EPISODE_STEPS}, or null for the family's episode length")
        need(s.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}; use --precision auto, fp32 or bf16")
        need(isinstance(s.n_step, int) and 1 <= s.n_step <= MAX_N_STEP, "n_step",
             f"must be an integer in 1 .. {MAX_N_STEP}")
        need(0 <= s.seed < 2 ** 63, "seed", "must be >= 0 (and below 2**63); e.g. --seed 2")
        need(s.torch_threads is None or 1 <= s.torch_threads <= 4096, "torch_threads",
             "must be >= 1, or null for cores / workers")
        need(s.device in ("auto", "cpu", "cuda") or (s.device.startswith("cuda:") and s.device[5:].isdigit()),
             "device", "must be auto, cpu, cuda or cuda:<index>")

    def check_own(self, need) -> None:
        """The solver's own fields' range checks: `need(condition, field, message)`."""

    def replay_bytes(self, obs_dim: int, act_dim: int, members: int) -> int:
        """The replay buffers of `members` experts (storage for min(capacity, train_steps) rows each)."""
        s: Any = self
        return members * min(s.replay_capacity, s.train_steps) * ((2 * obs_dim + act_dim + 3) * 4 + 1)

    def mlp_parameters(self, inp: int, out: int) -> int:
        """Weights and biases of one of the solver's MLPs (hidden_sizes) from `inp` to `out` features."""
        dims = [inp, *self.hidden_sizes, out]  # type: ignore[attr-defined]
        return sum(a * b + b for a, b in zip(dims, dims[1:]))

    def to_dict(self) -> dict:
        import dataclasses

        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        d["hidden_sizes"] = list(d["hidden_sizes"])
        return d

    @classmethod
    def from_dict(cls, d: dict):
        import dataclasses

        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        d = dict(d)
        if "hidden_sizes" in d:
            d["hidden_sizes"] = tuple(d["hidden_sizes"])
        return cls(**d)


class SolverConfig(Protocol):
    """What the generic parts (trainer, sweep, gate retries, the launchers' memory check) read of any solver's
    config; each solver's dataclass has these fields besides its own."""

    solver: ClassVar[str]  # its key in SOLVERS (a class attribute, not a field: configs are saved without it)
    train_steps: int
    seed_steps: int
    random_steps: int
    critic_update_every: int
    actor_update_every: int
    max_episode_steps: int | None
    hidden_sizes: tuple[int, ...]
    gamma: float
    n_step: int
    critic_layer_norm: bool
    obs_norm: bool
    share_experience: bool
    batch_size: int | None
    replay_capacity: int
    bootstrap_on_truncation: bool
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    quality_threshold: float | None
    seed: int
    device: str
    precision: str
    torch_threads: int | None
    extra: dict

    def resolved(self, family: str) -> SolverConfig: ...

    def validate(self) -> None: ...

    def to_dict(self) -> dict: ...

    def memory_bytes(self, obs_dim: int, act_dim: int, members: int) -> dict[str, int]: ...


TRAINER_FIELDS = tuple(name for name in SolverConfig.__annotations__ if name != "solver")


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


def adam(params, lr: float, eps: float) -> torch.optim.Adam:
    # fused Adam is the fastest Adam on CPU and CUDA (docs/benchmarks-training.md) and is still elementwise.
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


class StackedLearner:
    """N independent agents whose parameters are stacked along a leading member axis.

    Independence: every loss is a sum over members of that member's own mean loss, Adam is elementwise, and every
    random draw comes from the member's own `MemberRNG`, so member i follows the trajectory a solo agent with the
    same seed follows, up to float rounding. A subclass sets `cfg`, `n`, `seeds`, `act_dim`, `device`, `rngs`,
    `actor` (with an optional `obs_norm`), `critic` (an `EnsembleTwinCritic`: rows 2i, 2i+1 are member i's) and
    implements the methods below that raise NotImplementedError; the per-member checkpoint state is generic.
    """

    cfg: Any
    n: int
    seeds: list[int]
    act_dim: int
    device: torch.device
    rngs: list[MemberRNG]
    actor: nn.Module
    critic: nn.Module
    critic_opt: torch.optim.Optimizer
    updates: int

    def _set_members(self, obs_dim: int, act_dim: int, config, seeds: Sequence[int],
                      device: torch.device | str) -> None:
        """What every stacked learner holds before its networks: config, sizes, device, one RNG per member seed."""
        if len(seeds) < 1:
            raise ValueError(f"{type(self).__name__} needs at least one member seed")
        if config.batch_size is None:
            raise ValueError(f"{type(config).__name__}.batch_size is None: call config.resolved(family) first")
        self.cfg = config
        self.n = len(seeds)
        self.seeds = [int(s) for s in seeds]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.rngs = [MemberRNG(s, self.device) for s in self.seeds]

    def _init_members(self) -> None:
        """Each member's initial weights from its own RNG, in a fixed draw order: actor, then critic."""
        for i, rng in enumerate(self.rngs):
            self.actor.reset_member(i, rng.init)  # type: ignore[operator]
            self.critic.reset_member(i, rng.init)  # type: ignore[operator]

    def _critic_step(self, obs: torch.Tensor, act: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """One Adam step of the twin critics towards the targets y [N, B]: MSE(Q1) + MSE(Q2) per member, summed."""
        with self.autocast():
            q = self.critic(obs, act).float()
        critic_loss = ((q - y.unsqueeze(1)) ** 2).mean(dim=-1).sum(dim=1)  # [N]
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        self.critic_opt.step()
        self.updates += 1
        return {"critic_loss": critic_loss.detach().cpu().numpy(), "q1_mean": q[:, 0].mean(-1).detach().cpu().numpy()}

    # ------------------------------------------------------------------ what a solver defines
    def act(self, obs: np.ndarray, fp32: bool = False) -> np.ndarray:
        """obs [N, B, S] -> the deterministic actions [N, B, A] in [-1, 1] (evaluation, the saved expert)."""
        raise NotImplementedError

    def explore(self, obs: np.ndarray, step: int) -> np.ndarray:
        """obs [N, B, S] -> exploration actions [N, B, A] after the random steps; the trainer clips them."""
        raise NotImplementedError

    def update(self, batch: dict[str, np.ndarray], step: int, update_actor: bool) -> dict[str, np.ndarray]:
        """One critic step (and an actor step if `update_actor`) on a [N, B, ...] batch -> per-member metrics [N]."""
        raise NotImplementedError

    def curve_row(self, step: int) -> dict[str, float]:
        """Extra columns of every progress.csv row (e.g. TD3's exploration std)."""
        return {}

    def _modules(self) -> dict[str, nn.Module]:
        """Every stacked module of the checkpoint, by name (targets included)."""
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by the name of the module whose parameters it steps."""
        raise NotImplementedError

    def _exported(self) -> dict[str, tuple[nn.Module, ...]]:
        """The networks expert.pt stores, by name: (online module, copies a warm start also sets, e.g. targets)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared acting helpers
    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def observe(self, obs: np.ndarray) -> None:
        """Fold observations [N, B, S] into the running statistics (`obs_norm`); every network, targets included,
        normalises with the same statistics, so the critic's target uses what the critic uses."""
        if getattr(self.actor, "obs_norm", None) is None:
            return
        norm = self.actor.obs_norm
        norm.observe(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        for name in ("mean", "var", "count"):  # the critic keeps one row per head: member i at rows 2i, 2i+1
            getattr(self.critic.obs_norm, name).copy_(getattr(norm, name).repeat_interleave(2, dim=0))

    def random_actions(self, batch: int = 1) -> np.ndarray:
        return np.stack([rng.explore.uniform(-1.0, 1.0, size=(batch, self.act_dim)) for rng in self.rngs]
                        ).astype(np.float32)

    def _to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}

    # ------------------------------------------------------------------ per-member state
    @staticmethod
    def _member_rows(module_name: str, i: int) -> slice:
        return slice(2 * i, 2 * i + 2) if module_name.startswith("critic") else slice(i, i + 1)

    def member_state(self, i: int) -> dict:
        """Everything member i needs to resume alone: weights, Adam moments, RNG streams, counters."""
        nets = {}
        for name, mod in self._modules().items():
            rows = self._member_rows(name, i)
            nets[name] = {k: v[rows].detach().cpu().clone() for k, v in mod.state_dict().items()}
        opts = {}
        for name, opt in self._optimizers().items():
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
        for name, opt in self._optimizers().items():
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
        """Set member i's exported networks (and their copies, e.g. targets) to `networks` (member_networks')."""
        for name, modules in self._exported().items():
            rows = self._member_rows(name, i)
            for mod in modules:
                for k, v in mod.state_dict().items():
                    v[rows].copy_(networks[name][k])

    def member_networks(self, i: int) -> dict:
        """Member i's online exported networks (what expert.pt stores)."""
        return {name: {k: v[self._member_rows(name, i)].detach().cpu().clone() for k, v in mods[0].state_dict().items()}
                for name, mods in self._exported().items()}


class SolverBuilder:
    """What the generic trainer, sweep and expert loading need from a solver (acme's builder)."""

    name: ClassVar[str]  # its key in SOLVERS, recorded as "solver" in the expert files of every solver but td3
    config_class: ClassVar[type]
    # config fields a checkpoint must share with the run resuming it (a default fills a field older files lack)
    resume_keys: ClassVar[tuple[str, ...]] = ("hidden_sizes", "batch_size", "gamma", "precision", "n_step",
                                              "critic_layer_norm", "obs_norm", "share_experience")
    profiles: ClassVar[dict[str, dict]] = {"authors": {}}

    def make_learner(self, obs_dim: int, act_dim: int, config, seeds: Sequence[int],
                     device: torch.device | str = "cpu") -> StackedLearner:
        raise NotImplementedError

    def make_policy(self, obs_dim: int, act_dim: int, hidden: Sequence[int], config: dict
                    ) -> tuple[nn.Module, nn.Module]:
        """One member's (actor, critic) as expert.pt stores them, for `load_expert`: actor(obs [1, B, S]) is the
        deterministic action [1, B, A]; critic.q1(obs, act) the dataset's q* [1, B]. `config` is the saved dict."""
        raise NotImplementedError

    def tag(self) -> dict[str, str]:
        """What expert.pt, checkpoint.pt and summary.json record about the solver. Nothing for td3: its files
        stay byte-identical to those written before solvers existed (absent means td3)."""
        return {} if self.name == "td3" else {"solver": self.name}
