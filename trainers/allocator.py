"""Keep freed CPU memory in the process for the next pass (glibc on Linux; elsewhere nothing).

Every training step, evaluation pass and Hessian-vector product allocates activation buffers
of a few MiB and frees them at its end. glibc's malloc serves blocks above its *mmap
threshold* with fresh mappings that go back to the operating system when freed, and returns
the free top of its heap above its *trim threshold*. Both thresholds move with the history of
the process (mallopt(3): the threshold starts at 128 KiB and rises to the size of the largest
mapped block freed so far, up to 32 MiB), so whether a pass reuses memory or faults every page
of its buffers in again depends on what the process happened to free before. On the CPU
benchmark model (bench/README.md, "The allocator and the folded BatchNorm") the same cached
Hessian-vector product took 0.21 to 0.38 s from one process to the next under glibc's
defaults, and 0.20 to 0.26 s with the thresholds below, where its buffers stay in the heap.

:func:`keep_freed_memory` fixes them once per process, before the work starts:

- ``M_MMAP_THRESHOLD`` = :data:`MMAP_THRESHOLD` (32 MiB, the ceiling of glibc's own dynamic
  threshold on 64-bit): blocks below it come from the heap, whatever was freed before;
- ``M_TRIM_THRESHOLD`` = :data:`TRIM_THRESHOLD` (1 GiB): the heap gives memory back to the
  operating system only when more than that is free at its top.

The cost: a process keeps up to 1 GiB of freed memory resident, so its resident size stays
near its peak (the peak itself does not change). Numbers do not change: where a buffer lives
has no effect on what is computed in it. Environment variables win: a process started with
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` set (glibc's own tunables) keeps what
they say, and nothing is changed. PyTorch's CPU tensors are allocated with glibc's
``posix_memalign``; the CUDA caching allocator is not affected.

Why not a library: jemalloc or tcmalloc would do this through ``LD_PRELOAD``, which has to be
set before the interpreter starts (on every Ray worker) and is not installed with pip; one
``mallopt`` call through :mod:`ctypes` needs neither.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Mapping, Optional

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30

ENVIRONMENT_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)  # the interpreter's own symbols, glibc's malloc among them
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's mmap and trim thresholds (module docstring) for this process.

    Returns True when both were set; False, changing nothing, on a C library other than
    glibc or when ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is in ``environ``.
    Calling it again is harmless."""
    if any(name in environ for name in ENVIRONMENT_VARIABLES):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # The mmap threshold first: setting either one switches glibc's dynamic threshold off, and
    # a trim threshold alone would leave the mmap threshold at its 128 KiB start.
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
