"""glibc malloc settings for the large, short-lived arrays of every stage.

By default glibc serves blocks above a dynamic threshold (128 kB, rising to at most 32 MB) with
``mmap`` and returns them with ``munmap``: every batch then page-faults its activations and
windows afresh. On a 2-core VM, the streaming predictor (UNet/ResNet-18, batch 8, 256 px
windows) spent half its time in the kernel that way (56 s → 25 s for a 4098² scene with the
settings below, docs/predict.md). Fixed thresholds keep freed blocks in the heap for reuse;
the footprint of each stage is bounded by its batch, so memory stays flat in scene size.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["MALLOC_MMAP_THRESHOLD", "MALLOC_TRIM_THRESHOLD", "malloc_environ", "keep_freed_memory"]

log = logging.getLogger(__name__)

MALLOC_MMAP_THRESHOLD = 2**26  # blocks below 64 MB come from the heap (and are reused)
MALLOC_TRIM_THRESHOLD = 2**28  # the heap is trimmed only when 256 MB are free at its top

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_applied = False


def malloc_environ() -> dict[str, int]:
    """The same settings as environment variables, for worker processes started elsewhere."""
    return {"MALLOC_TRIM_THRESHOLD_": MALLOC_TRIM_THRESHOLD, "MALLOC_MMAP_THRESHOLD_": MALLOC_MMAP_THRESHOLD}


def keep_freed_memory() -> None:
    """Apply the settings to this process (Linux with glibc; once; a no-op elsewhere)."""
    global _applied
    if _applied or not sys.platform.startswith("linux"):
        return
    _applied = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        log.debug("mallopt unavailable; malloc left at its defaults")
