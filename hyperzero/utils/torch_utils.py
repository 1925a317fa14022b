"""Device choice and seeding."""
from __future__ import annotations

import random

import numpy as np


DEVICE_FORMS = "auto, cpu, cuda or cuda:<index>"


def valid_device(device) -> bool:
    """Whether `device` is a device name hyperzero runs on (auto | cpu | cuda | cuda:<index>)."""
    return isinstance(device, str) and (device in ("auto", "cpu", "cuda") or (
        device.startswith("cuda:") and device[5:].isdigit()))


def resolve_device(device: str = "auto"):
    """`auto` picks CUDA when present, else CPU; anything else is passed to torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not valid_device(device):
        raise ValueError(f"device {device!r}: must be {DEVICE_FORMS}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def bf16_emulated_reason(device) -> str | None:
    """Why bf16 would only be emulated on `device` (a clause for an error message), or None where it is native."""
    import torch

    from hyperzero.utils.hardware import cpu_bf16_kernels, cpu_model, onednn_isa_cap

    device = torch.device(device)
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"this GPU ({torch.cuda.get_device_name(device)}) has no native bf16"
    if cpu_bf16_kernels() is not None:
        return None
    capped = onednn_isa_cap()
    why = (f"oneDNN is capped at {capped} (ONEDNN_MAX_CPU_ISA), below its bf16 instructions" if capped
           else "it has no AMX / AVX512-BF16")
    return f"this CPU ({cpu_model()}) would only emulate bf16: {why}; emulated bf16 is about 17x slower than fp32"


def resolve_precision(precision: str, device) -> str:
    """`auto` -> bf16 on a CPU with AMX tiles, else fp32: with AVX512-BF16 alone the experts ran 0.6-0.7x as
    fast in bf16, and on CUDA autocast's casts cost more than these small matmuls save (an H200 ran ensembles
    0.7-0.8x as fast in bf16, docs/experts.md). An explicit bf16 where the hardware would only emulate it is
    refused (on a CPU ~17x slower than fp32); with AVX512-BF16 alone it runs, with a warning."""
    import warnings

    import torch

    from hyperzero.utils.hardware import cpu_bf16_kernels, cpu_model

    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cpu" and cpu_bf16_kernels() == "amx" else "fp32"
    if precision == "bf16":
        reason = bf16_emulated_reason(device)
        if reason:
            raise ValueError(f"precision bf16 was asked for, but {reason}. Use --precision auto (picks fp32 here) or fp32")
        if device.type == "cpu" and cpu_bf16_kernels() == "avx512_bf16":
            warnings.warn(f"precision bf16 on this CPU ({cpu_model()}) runs on AVX512-BF16 without AMX, where the "
                          "experts trained at 0.6-0.7x the speed of fp32; --precision auto picks fp32 here", stacklevel=2)
    return precision
