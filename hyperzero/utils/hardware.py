"""What the machine can do: CPU model and native bf16 support (read, never assumed)."""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Mapping

# x86 flags of native bf16 matmul kernels: AMX tiles, or AVX-512 BF16 dot products. Without them, oneDNN
# emulates bf16 and autocast runs ~17x slower than fp32 (measured on an AMD EPYC Zen 3, AVX2 only).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# oneDNN, which runs torch's bf16 matmuls, honours a user's cap on its instruction sets (e.g. AVX2): below
# AVX512_CORE_BF16 it emulates bf16 even where the CPU has the instructions.
ONEDNN_ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ONEDNN_AVX512_BF16_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512")


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


def onednn_isa_cap() -> str | None:
    """The instruction-set cap a user put on oneDNN (e.g. 'AVX2'), or None when it may use all the CPU has."""
    for var in ONEDNN_ISA_VARS:
        value = os.environ.get(var, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return value
    return None


def cpu_bf16_kernels() -> str | None:
    """The native bf16 matmul kernels oneDNN may use here: 'amx', 'avx512_bf16', or None (bf16 would be
    emulated). ARM/other: None (not measured)."""
    flags, cap = cpu_flags(), onednn_isa_cap()
    amx_allowed = cap is None or "AMX" in cap
    if "amx_bf16" in flags and amx_allowed:
        return "amx"
    if "avx512_bf16" in flags and (amx_allowed or cap in ONEDNN_AVX512_BF16_CAPS):
        return "avx512_bf16"
    return None


def cpu_has_native_bf16() -> bool:
    """True when the CPU runs bf16 matmuls natively (AMX or AVX512-BF16, within any oneDNN cap)."""
    return cpu_bf16_kernels() is not None


def describe() -> dict[str, object]:
    """CPU facts recorded in every run_info.json and benchmark table."""
    info = _cpuinfo()
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "native_bf16": cpu_has_native_bf16(),
            "bf16_kernels": cpu_bf16_kernels(), "onednn_isa_cap": onednn_isa_cap(),
            "isa": sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", *BF16_CPU_FLAGS)),
            # the model name alone may not tell CPU generations apart (lscpu says only "AMD EPYC" on Zen 3 and Zen 5)
            "cpu_family": info.get("cpu family"), "cpu_model_number": info.get("model")}


def cpu_kind(facts: Mapping[str, object] | None = None) -> str:
    """One line naming a CPU and what sets its numbers apart, for tables and reports: its model name, x86
    family/model, cores, widest vector ISA and bf16 kernels, e.g. "AMD EPYC (family 26, model 2), 2 cores,
    AVX-512, bf16 on AVX512-BF16 (no AMX)". `facts` is a recorded `describe()` (default: this machine)."""
    facts = describe() if facts is None else facts
    family, number = facts.get("cpu_family"), facts.get("cpu_model_number")
    name = str(facts.get("cpu_model") or "unknown CPU") + (f" (family {family}, model {number})" if family else "")
    isa = list(facts.get("isa") or [])  # type: ignore[call-overload]
    vector = "AVX-512" if "avx512f" in isa else "AVX2" if "avx2" in isa else None
    bf16 = {"amx": "bf16 on AMX", "avx512_bf16": "bf16 on AVX512-BF16 (no AMX)"}.get(
        str(facts.get("bf16_kernels")), "no native bf16")
    cap = f", oneDNN capped at {facts['onednn_isa_cap']}" if facts.get("onednn_isa_cap") else ""
    cores = f", {facts['cores']} cores" if facts.get("cores") else ""
    return name + cores + (f", {vector}" if vector else "") + f", {bf16}{cap}"


def memory_bytes() -> int | None:
    """Memory this process may use: physical RAM, or a smaller cgroup limit (a container's); None if unknown."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    return min(limits) if limits else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def numerics_record() -> dict[str, object]:
    """The machine facts that can change a run's numbers (with its packing), recorded in run_info.json."""
    import torch

    return {"cpu_count": os.cpu_count() or 1, "cpu_model": cpu_model(), "torch": torch.__version__,
            "note": "see docs/reliability.md: float rounding of batched matmuls depends on threads and CPU kernels"}
