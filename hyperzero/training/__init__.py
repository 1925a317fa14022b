"""Training every approximator through one loop: grouped-by-task batches from train tasks only,
validation-based selection, resumable checkpoints. See docs/methods.md."""
from hyperzero.training.config import FitConfig
from hyperzero.training.trainer import TrainedModel, fit, load_fit
from hyperzero.training.loop import train_loop

__all__ = ["FitConfig", "TrainedModel", "fit", "load_fit", "train_loop"]
