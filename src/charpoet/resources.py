"""How much memory this machine has, and a clear error for sizes it cannot hold.

An impossible size (``--rnn-size 10000000``, ``--num-samples 1000000000``, a 200 GB text file)
should be a one-line ``ConfigError`` before anything is allocated, not a MemoryError, a
crash of the allocator or the kernel's OOM killer minutes later.
"""

from __future__ import annotations

import os

from charpoet.errors import ConfigError


def physical_memory() -> int:
    """Bytes of RAM on this machine (a large number where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def device_memory(device: object) -> int:
    """Bytes of memory of a torch device: its own for CUDA, the machine's otherwise."""
    import torch

    dev = torch.device(device)  # type: ignore[arg-type]
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(dev.index or 0).total_memory
    return physical_memory()


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require_memory(needed: float, what: str, advice: str, *, device: object = "cpu") -> None:
    """``ConfigError`` when ``needed`` bytes exceed the memory of ``device``."""
    have = device_memory(device)
    if needed > have:
        raise ConfigError(f"{what} needs about {format_bytes(needed)} of memory, more than this machine's "
                          f"{format_bytes(have)}; {advice}")
