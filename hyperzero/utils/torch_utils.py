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


def resolve_precision(precision: str, device) -> str:
    """`auto` -> bf16 on a CPU that runs it natively (AMX / AVX512-BF16), else fp32, on CUDA too: there
    autocast's casts cost more than these small matmuls save (an H200 ran ensembles 0.7-0.8x as fast in
    bf16, docs/experts.md). An explicit bf16 where the hardware would only emulate it is refused: on a CPU
    it runs ~17x slower than fp32."""
    import torch

    from hyperzero.utils.hardware import cpu_has_native_bf16, cpu_model

    device = torch.device(device)
    native = (torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16())
    if precision == "auto":
        return "bf16" if native and device.type == "cpu" else "fp32"
    if precision == "bf16" and not native:
        raise ValueError(f"precision bf16 was asked for, but this {device.type} ({cpu_model() if device.type == 'cpu' else torch.cuda.get_device_name(device)}) "
                         "has no native bf16 (no AMX / AVX512-BF16): it would be emulated, about 17x slower than fp32. "
                         "Use --precision auto (picks fp32 here) or fp32")
    return precision
