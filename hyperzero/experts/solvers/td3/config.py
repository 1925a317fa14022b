"""TD3 expert configuration: the authors' defaults (HyperZero `agents/td3.py`, `cfgs/`), every one overridable."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hyperzero.experts.solvers.base import (
    SolverConfigBase,
)


@dataclass
class TD3Config(SolverConfigBase):
    solver: ClassVar[str] = "td3"  # its key in hyperzero.experts.solvers.SOLVERS (not a field: not saved)
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

    def check_own(self, need) -> None:
        need(self.std_start >= 0, "std_start", "must be >= 0")
        need(self.std_end >= 0, "std_end", "must be >= 0")
        need(self.std_decay_steps > 0, "std_decay_steps", "must be > 0")
        need(self.target_noise_std is None or self.target_noise_std >= 0, "target_noise_std", "must be >= 0 or null")
        need(self.target_noise_clip >= 0, "target_noise_clip", "must be >= 0")

    def memory_bytes(self, obs_dim: int, act_dim: int, members: int) -> dict[str, int]:
        """Estimated peak memory of one ensemble of `members` experts in one process, by part (bytes): the
        replay buffers, the networks with their targets, gradients and Adam moments, and one update's batch
        and activations. A bound for refusing what cannot fit, not a measurement (within ~2x of one)."""
        replay = self.replay_bytes(obs_dim, act_dim, members)
        widths, mlp = list(self.hidden_sizes), self.mlp_parameters

        params = mlp(obs_dim, act_dim) + 2 * mlp(obs_dim + act_dim, 1)
        networks = members * params * 4 * 5  # online, target, gradient, two Adam moments
        batch = self.batch_size or 256
        activations = members * batch * (sum(widths) * 3 * 4 + (2 * obs_dim + act_dim + 2) * 4 * self.n_step) * 4
        return {"replay": replay, "networks": networks, "batch": activations}

    def exploration_std(self, step: int) -> float:
        """The authors' `linear(std_start, std_end, std_decay_steps)` schedule."""
        mix = min(max(step / self.std_decay_steps, 0.0), 1.0)
        return (1.0 - mix) * self.std_start + mix * self.std_end

    def target_std(self, step: int) -> float:
        return self.exploration_std(step) if self.target_noise_std is None else self.target_noise_std
