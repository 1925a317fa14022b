"""SAC expert configuration: Haarnoja et al.'s SAC with automatic entropy tuning, every setting overridable.

The fields the generic trainer reads (hyperzero.experts.solvers.base.SolverConfig) mean what they mean for TD3.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hyperzero.experts.solvers.base import (
    SolverConfigBase,
)


@dataclass
class SACConfig(SolverConfigBase):
    solver: ClassVar[str] = "sac"  # its key in hyperzero.experts.solvers.SOLVERS (not a field: not saved)
    # --- schedule -----------------------------------------------------------------------------
    train_steps: int = 100_000  # env steps per expert
    seed_steps: int = 4000  # no gradient updates before this many env steps
    random_steps: int = 2000  # uniform-random actions for the first steps
    critic_update_every: int = 1  # one critic update every this many env steps once seeding is over
    actor_update_every: int = 1  # actor, temperature and target updates every this many env steps
    max_episode_steps: int | None = None  # shorten episodes (tests/debug); None = the family's 1000-step time limit
    # --- networks and optimisation ------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = (256, 256)  # actor and each twin critic: MLP widths, ReLU
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    alpha_lr: float = 3e-4  # Adam learning rate of the log temperature
    adam_eps: float = 1e-8  # Adam epsilon
    tau: float = 0.005  # Polyak rate of the target critics, applied on actor steps
    gamma: float = 0.99  # discount
    n_step: int = 1  # n-step TD targets (the entropy bonus only at the bootstrap step); cut at episode ends
    critic_layer_norm: bool = False  # LayerNorm on the critics' hidden layers
    obs_norm: bool = False  # running mean/std normalisation of each member's observations, saved with the expert
    share_experience: bool = False  # members with equal dynamics also learn from each other's transitions
    batch_size: int | None = None  # minibatch per member; None = family default (256; 512 for walker-walk)
    replay_capacity: int = 1_000_000  # per member; storage is allocated for min(capacity, train_steps) rows
    # --- entropy ------------------------------------------------------------------------------
    init_alpha: float = 0.1  # initial temperature (pytorch_sac's DMC setting: rewards are in [0, 1] per step)
    target_entropy: float | None = None  # the temperature keeps the policy's entropy near this; None = -act_dim
    log_std_min: float = -5.0  # the policy's log std is squashed into [log_std_min, log_std_max]
    log_std_max: float = 2.0  # upper bound of the policy's log std
    bootstrap_on_truncation: bool = True  # time-limit ends bootstrap (not terminal); False treats them as terminal
    # --- evaluation, checkpoints, quality gate -------------------------------------------------
    eval_every: int = 10_000  # env steps between deterministic (mean-action) evaluations (0 = only the final one)
    eval_episodes: int = 10  # deterministic episodes per evaluation
    checkpoint_every: int = 10_000  # env steps between resume checkpoints; a multiple of the episode length
    quality_threshold: float | None = None  # final eval return below this -> summary.json "flagged": true
    # --- runtime ------------------------------------------------------------------------------
    seed: int = 2  # seed of every expert
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda
    precision: str = "auto"  # auto (bf16 only on a CPU that runs it natively) | fp32 | bf16 (autocast matmuls)
    torch_threads: int | None = None  # intra-op threads per worker; None = cores / workers
    extra: dict = field(default_factory=dict)  # free-form notes stored with the run (not used by training)

    def check_own(self, need) -> None:
        for key in ("alpha_lr", "init_alpha"):
            need(getattr(self, key) > 0, key, "must be > 0")
        need(self.log_std_min < self.log_std_max, "log_std_min", "must be below log_std_max")

    def memory_bytes(self, obs_dim: int, act_dim: int, members: int) -> dict[str, int]:
        """Estimated peak memory of one ensemble (bytes), as TD3Config.memory_bytes: a bound, not a measurement."""
        replay = self.replay_bytes(obs_dim, act_dim, members)
        widths, mlp = list(self.hidden_sizes), self.mlp_parameters

        # actor: online, gradient, two Adam moments; critics: the same plus the target
        networks = members * (mlp(obs_dim, 2 * act_dim) * 4 + 2 * mlp(obs_dim + act_dim, 1) * 5) * 4
        batch = self.batch_size or 256
        activations = members * batch * (sum(widths) * 4 * 4 + (2 * obs_dim + act_dim + 2) * 4 * self.n_step) * 4
        return {"replay": replay, "networks": networks, "batch": activations}
