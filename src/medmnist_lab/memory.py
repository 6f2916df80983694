"""Refuse up front what cannot fit in memory, with the estimate in the message.

A request whose size is known before the work starts (images to sample, an expansion factor, an
evaluation batch) is compared with the memory available now (MemAvailable, or a cgroup limit
when one is lower). Asking for ten million GAN samples must fail in a second with the numbers,
not after an hour when the kernel's OOM killer ends the process without a word.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from medmnist_lab.errors import MedMNISTLabError


class MemoryEstimateError(MedMNISTLabError):
    """A request that cannot fit in the memory this machine has available."""


def available_bytes() -> int | None:
    """Memory available to this process now, in bytes; None where it cannot be read."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            found.append(int(text))
    return min(found) if found else None


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_fits(nbytes: int, what: str, hint: str, available: int | None = None) -> None:
    """Raise `MemoryEstimateError` when `nbytes` exceeds the available memory (unknown: allowed)."""
    available = available_bytes() if available is None else available
    if available is not None and nbytes > available:
        raise MemoryEstimateError(
            f"{what} needs about {gib(nbytes)} of memory, but only {gib(available)} is available; {hint}"
        )
