"""Device choice and seeding."""
from __future__ import annotations

import random

import numpy as np


def resolve_device(device: str = "auto"):
    """`auto` picks CUDA when present, else CPU; anything else is passed to torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
