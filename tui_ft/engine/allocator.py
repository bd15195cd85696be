"""glibc malloc settings for processes that run a model step after step (the runner, the generation
service): freed buffers are kept for the next step instead of being returned and faulted in again."""

from __future__ import annotations

import os
import sys

# glibc malloc, set by `keep_freed_memory` (mallopt's parameter numbers, from malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 * 1024 * 1024
ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed buffers for the next step instead of returning them.

    A step on the CPU allocates and frees the same activation and gradient buffers every
    step. With glibc's defaults, buffers above the mmap threshold (128 KiB, raised only by the sizes
    the process happened to free before) are mmapped and unmapped every time, and freed heap above
    128 KiB is trimmed: each step then faults its buffers in again, page by page (on the demo model,
    ~10,000 minor page faults and a third of the step's CPU time in the kernel). Fixed thresholds
    (32 MiB for mmap, 256 MiB of free heap before trimming) keep them in the heap. Linux with glibc
    only; nothing is changed when the user set glibc's own malloc variables. True when applied.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ALLOCATOR_ENV):
        return False
    if os.environ.get("TUI_FT_MALLOC", "").lower() == "default":
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their malloc differs
            return False
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False
