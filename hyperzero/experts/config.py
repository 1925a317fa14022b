"""TD3 expert configuration: the authors' defaults (HyperZero `agents/td3.py`, `cfgs/`), every one overridable."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Per-family overrides of the authors' config (their `cfgs/task/*.yaml`): walker uses batch 512.
FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "walker-walk": {"batch_size": 512},
}

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TD3Config:
    # --- schedule -----------------------------------------------------------------------------
    train_steps: int = 100_000  # env steps per expert (authors: 1M; 100k fits this project's CPU budget)
    seed_steps: int = 4000  # no gradient updates before this many env steps (authors' num_seed_frames)
    random_steps: int = 2000  # uniform-random actions for the first steps (authors' num_expl_steps)
    critic_update_every: int = 1  # one critic update every this many env steps once seeding is over
    actor_update_every: int = 2  # policy delay: actor + both target updates every this many env steps
    max_episode_steps: int | None = None  # shorten episodes (tests/debug); None = the family's 1000-step time limit
    # --- networks and optimisation ------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = (256, 256)  # actor and each twin critic: MLP widths, ReLU
    actor_lr: float = 1e-4  # Adam learning rate of the actor
    critic_lr: float = 1e-4  # Adam learning rate of the twin critics
    adam_eps: float = 1e-8  # Adam epsilon (torch default, as the authors)
    tau: float = 0.01  # Polyak rate of the target networks, applied on actor steps only
    gamma: float = 0.99  # discount
    n_step: int = 1  # n-step TD targets (authors: 1); assembled at sampling time, cut at episode ends
    critic_layer_norm: bool = False  # LayerNorm on the critics' hidden layers (authors: none)
    obs_norm: bool = False  # running mean/std normalisation of each member's observations, saved with the expert
    #   (SimBa's RSNorm; authors: none)
    share_experience: bool = False  # members with equal dynamics also learn from each other's transitions,
    #   relabelled with their own reward (authors: none; see docs/experts.md, 'shared experience')
    batch_size: int | None = None  # minibatch per member; None = family default (256; 512 for walker-walk)
    replay_capacity: int = 1_000_000  # per member; storage is allocated for min(capacity, train_steps) rows
    # --- noise --------------------------------------------------------------------------------
    std_start: float = 1.0  # exploration std at step 0: linear(1.0 -> 0.1 over 100k) as the authors
    std_end: float = 0.1  # exploration std after std_decay_steps
    std_decay_steps: int = 100_000  # steps of the linear decay of the exploration std
    target_noise_std: float | None = None  # None = follow the exploration schedule (authors); 0.2 = canonical TD3
    target_noise_clip: float = 0.3  # clip of the target-policy smoothing noise
    clip_stored_actions: bool = True  # store the action the env applied (clip to [-1,1]); authors stored unclipped
    bootstrap_on_truncation: bool = True  # time-limit ends bootstrap (not terminal); False treats them as terminal
    # --- evaluation, checkpoints, quality gate -------------------------------------------------
    eval_every: int = 10_000  # env steps between deterministic evaluations (0 = only the final one)
    eval_episodes: int = 10  # deterministic episodes per evaluation (authors: 10)
    checkpoint_every: int = 10_000  # env steps between resume checkpoints; a multiple of the episode length
    quality_threshold: float | None = None  # final eval return below this -> summary.json "flagged": true
    # --- runtime ------------------------------------------------------------------------------
    seed: int = 2  # seed of every expert (authors: 2, one run per task)
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda
    precision: str = "auto"  # auto (bf16 only on a CPU that runs it natively) | fp32 | bf16 (autocast matmuls)
    torch_threads: int | None = None  # intra-op threads per worker; None = cores / workers
    extra: dict = field(default_factory=dict)  # free-form notes stored with the run (not used by training)

    def resolved(self, family: str) -> "TD3Config":
        """A copy with the family defaults filled in, validated."""
        cfg = dataclasses.replace(self, hidden_sizes=tuple(int(h) for h in self.hidden_sizes))
        for key, value in FAMILY_DEFAULTS.get(family, {}).items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.batch_size is None:
            cfg.batch_size = 256
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"TD3Config: {msg}")

        from hyperzero.utils.typed import check_fields

        check_fields(self)  # types first (TD3Config(train_steps="10") is refused naming the field), then ranges
        need(self.train_steps > 0, f"train_steps must be > 0 (got {self.train_steps}); pass --steps N with N >= 1")
        need(self.seed_steps >= 0 and self.random_steps >= 0, "seed_steps and random_steps must be >= 0")
        need(self.critic_update_every >= 1 and self.actor_update_every >= 1,
             "critic_update_every and actor_update_every must be >= 1")
        need(all(h > 0 for h in self.hidden_sizes) and len(self.hidden_sizes) >= 1,
             f"hidden_sizes must be positive widths (got {self.hidden_sizes})")
        need(self.actor_lr > 0 and self.critic_lr > 0, "learning rates must be > 0")
        need(0 < self.tau <= 1, f"tau must be in (0, 1] (got {self.tau})")
        need(0 <= self.gamma < 1, f"gamma must be in [0, 1) (got {self.gamma})")
        need(self.batch_size is None or self.batch_size > 0, f"batch_size must be > 0 (got {self.batch_size})")
        need(self.replay_capacity > 0, "replay_capacity must be > 0")
        need(self.std_start >= 0 and self.std_end >= 0, "exploration stds must be >= 0")
        need(self.std_decay_steps > 0, "std_decay_steps must be > 0")
        need(self.target_noise_clip >= 0, "target_noise_clip must be >= 0")
        need(self.eval_every >= 0, "eval_every must be >= 0 (0 = evaluate only at the end)")
        need(self.eval_episodes >= 1, f"eval_episodes must be >= 1 (got {self.eval_episodes})")
        need(self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0 = only at the end)")
        need(self.max_episode_steps is None or self.max_episode_steps > 0, "max_episode_steps must be > 0 or None")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS} (got {self.precision!r}); "
                                           "use --precision auto, fp32 or bf16")
        need(isinstance(self.n_step, int) and self.n_step >= 1, f"n_step must be an integer >= 1 (got {self.n_step!r})")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"device must be auto, cpu or cuda (got {self.device!r})")

    def exploration_std(self, step: int) -> float:
        """The authors' `linear(std_start, std_end, std_decay_steps)` schedule."""
        mix = min(max(step / self.std_decay_steps, 0.0), 1.0)
        return (1.0 - mix) * self.std_start + mix * self.std_end

    def target_std(self, step: int) -> float:
        return self.exploration_std(step) if self.target_noise_std is None else self.target_noise_std

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TD3Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TD3Config: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        d = dict(d)
        if "hidden_sizes" in d:
            d["hidden_sizes"] = tuple(d["hidden_sizes"])
        return cls(**d)
