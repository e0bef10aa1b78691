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

A full collection walks every object of the process: in a worker serving 25 apps, their
import and export tables make that 50-100 ms, and parking, which comes in waves after
traffic, paid it for each sweep that parked something (most of an idle lattice's CPU in
the minute after traffic at N = 50). The cycles a call leaves are young, so parking
collects the young generations first and walks the whole heap only when a parked
artifact is still mapped after that (``/proc/self/maps``):
``give_back_freed_memory(collect_cycles=True, unmapped=paths)``.

It lives in ``trellis.kit``, not in ``trellis.host.runtime``, so that a process that runs no
Wasm (the host) calls it without importing the runtime package, which loads wasmtime (its
shared library and bindings: ~6 MiB of the host's PSS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Callable, Collection
from pathlib import Path

__all__ = ["any_mapped", "give_back_freed_memory"]

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


#: where a Linux process reads its own mappings
MAPS = Path("/proc/self/maps")


def any_mapped(paths: Collection[str]) -> bool:
    """Whether any of the files ``paths`` is mapped in this process (True when the mappings
    cannot be read: the caller then does the thorough thing)."""
    try:
        maps = MAPS.read_text()
    except OSError:
        return True
    return any(path in maps for path in paths)


def give_back_freed_memory(collect_cycles: bool = False, unmapped: Collection[str] | None = None) -> bool:
    """Return the free pages of the C heap to the kernel; whether anything was returned. With
    ``collect_cycles``, Python's cyclic garbage is collected first: the whole heap (tens of
    milliseconds in a worker with many components), or, given ``unmapped`` (files that the
    garbage may keep mapped: parked artifacts), the young generations, and the whole heap only
    if one of those files is still mapped after that."""
    if collect_cycles:
        if unmapped is None:
            gc.collect()
        else:
            gc.collect(1)
            if any_mapped(unmapped):
                gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
