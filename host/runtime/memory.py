"""Giving memory the process has freed back to the system.

CPython allocates large objects (an 18 MiB component read from disk, an artifact
fetched from the lattice) with glibc's ``malloc``. glibc raises its mmap threshold
after the first such block is freed, so later ones come from the heap, and a heap
rarely shrinks by itself: the pages stay resident (and count in the process's PSS)
long after the bytes object is gone. ``malloc_trim(0)`` hands the free pages of every
arena back to the kernel. It costs about a millisecond, so it is called after rare
events that free a lot (a component loaded or parked, an artifact fetched), never
per call.

Python's cyclic garbage can hold a component's compiled code: after it served calls,
objects in reference cycles (an exception's traceback and its frames, a call's context)
keep the wasmtime objects that keep the ``mmap``'d artifact, and an idle worker allocates
too little for the collector to run (``trellis.kit.gc_tuning`` raises its threshold). So
a parked or unloaded component's memory is given back after a collection:
``give_back_freed_memory(collect_cycles=True)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Callable

__all__ = ["give_back_freed_memory"]

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_freed_memory(collect_cycles: bool = False) -> bool:
    """Return the free pages of the C heap to the kernel; whether anything was returned. With
    ``collect_cycles``, Python's cyclic garbage is collected first (a few milliseconds)."""
    if collect_cycles:
        gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
