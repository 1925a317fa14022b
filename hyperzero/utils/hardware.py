"""What the machine can do: CPU model and native bf16 support (read, never assumed)."""
from __future__ import annotations

import functools
import platform
from pathlib import Path

# x86 flags of native bf16 matmul kernels (AMX tiles or AVX-512 BF16). Without them, oneDNN emulates bf16
# and autocast runs ~17x slower than fp32 (measured on an AMD EPYC Zen 3, AVX2 only).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def cpu_model() -> str:
    """The CPU model name as lscpu shows it (e.g. 'AMD EPYC 7B13'), or the platform's best guess."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_has_native_bf16() -> bool:
    """True when the CPU runs bf16 matmuls natively (AMX or AVX512-BF16); ARM/other: False (not measured)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def describe() -> dict[str, object]:
    """CPU facts recorded in every run_info.json and benchmark table."""
    import os

    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "native_bf16": cpu_has_native_bf16(),
            "isa": sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", *BF16_CPU_FLAGS))}
