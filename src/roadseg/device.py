"""What this machine can do: the CPU's name and instruction-set flags, bf16 and INT8-dot support. Every probe of
the hardware lives here, so training, inference, quantization and benchmarks agree on it."""

from __future__ import annotations

import functools
import os
import platform

import torch

# the flags that decide reduced-precision speed, in the order benchmark tables print them
KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict:
    info: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def cpu_arch() -> str:
    """The CPU architecture, e.g. 'x86_64' or 'aarch64'."""
    return platform.machine()


def cpu_cores() -> int | None:
    """Logical CPUs of this machine (os.cpu_count(); None when unknown)."""
    return os.cpu_count()


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), for run records and benchmark tables."""
    return _cpuinfo().get("model name") or platform.processor() or cpu_arch()


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def key_flags() -> str:
    """The reduced-precision flags this CPU has, e.g. 'avx2 avx512f avx512_vnni avx512_bf16' ('' when unknown)."""
    flags = cpu_flags()
    return " ".join(f for f in KEY_FLAGS if f in flags)


def cpu_supports_bf16() -> bool:
    """bf16 convolutions run natively (AVX-512 BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older torch
        return False


def avx2_saturation() -> bool:
    """True on x86 CPUs without VNNI, where ONNX Runtime's u8 x s8 kernels (vpmaddubsw) saturate 16-bit pair sums:
    7-bit weights (reduce_range) avoid it. Measured on such a CPU: 8-bit weights cost 2 MaxF points."""
    if cpu_arch() not in ("x86_64", "AMD64"):
        return False
    flags = cpu_flags()
    if not flags:
        return True
    return not any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def describe() -> str:
    """'AMD EPYC ..., 2 cores, flags avx2 avx512f ...' for tables and logs."""
    return f"{cpu_name()}, {cpu_cores()} cores, flags: {key_flags() or 'unknown'}"
