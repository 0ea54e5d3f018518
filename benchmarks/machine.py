"""The machine a benchmark ran on: every benchmark prints this line first, so a figure in the
README always says which CPU it came from and whether that CPU has native bf16."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_description() -> str:
    """CPU model, core count, its vector flags and whether it has native bf16 (avx512_bf16 or amx_bf16)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_bf16")
                    if f in flags) or "unknown"
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    native = f"yes ({', '.join(bf16)})" if bf16 else "no (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo)"
    import torch

    return f"CPU: {model}, {os.cpu_count()} cores; flags: {simd}; native bf16: {native}; torch {torch.__version__}"
