"""Moved: TD3Config is hyperzero.experts.solvers.td3.config; the bounds every solver shares are in solvers.base."""
from hyperzero.experts.solvers.base import (
                                           FAMILY_DEFAULTS,
                                           MAX_BATCH,
                                           MAX_EPISODE_STEPS,
                                           MAX_EVAL_EPISODES,
                                           MAX_LAYERS,
                                           MAX_N_STEP,
                                           MAX_TRAIN_STEPS,
                                           MAX_WIDTH,
                                           PRECISIONS,
)
from hyperzero.experts.solvers.td3.config import TD3Config

__all__ = ["FAMILY_DEFAULTS", "MAX_BATCH", "MAX_EPISODE_STEPS", "MAX_EVAL_EPISODES", "MAX_LAYERS", "MAX_N_STEP",
           "MAX_TRAIN_STEPS", "MAX_WIDTH", "PRECISIONS", "TD3Config"]
