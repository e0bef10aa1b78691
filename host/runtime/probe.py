"""What one call cost: CPU time, memory touched, fuel, and whether its instance was fresh.

:class:`CallProbe` is filled in by :meth:`Invoker.invoke` when one is passed. It
reads the calling thread's CPU clock and page faults at each end (a
``CLOCK_THREAD_CPUTIME_ID`` read and a ``getrusage(RUSAGE_THREAD)``, ~1 µs
together; getrusage's own CPU times are tick-sampled and move in jumps), so it
counts what ran on that thread between them:
lowering the arguments, instantiating (a fresh instance), the Wasm itself and
lifting the result. Time spent blocked in an import (a call over the lattice)
costs no CPU and is not counted. A call to another component that runs nested
on the same thread (a co-located call, ``host/workers/colocated.py``) has its
own probe; its CPU and memory are taken out of the caller's, so each is counted
once.

Memory is the pages the call touched first (minor page faults × page size):
for a fresh instance, the memory it wrote (its heap, its stack, the pages of
its initial image it changed) plus the host's buffers for its values; for a warm
instance, what it grew by. Pages of the component's memory image that it only
reads are shared between instances and counted coarsely (the kernel maps up to
16 at a fault). wasmtime-py gives no access to a component's memories, so this
is the measure of what an instance costs: :attr:`CallProbe.memory_bytes`, the
instance's total so far, is its peak (Wasm memories never shrink).
"""

from __future__ import annotations

import os
import resource
import threading
import time

__all__ = ["CallProbe", "PAGE_SIZE"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_getrusage = resource.getrusage
_THREAD = resource.RUSAGE_THREAD
_thread_time = time.thread_time
_nested = threading.local()


class CallProbe:
    """One call's costs (see the module doc). Reusable across a call's attempts: an inline run
    cut short and run again on a thread adds both runs' CPU."""

    __slots__ = ("cold", "fuel", "cpu_s", "memory_bytes", "_cpu0", "_faults0", "_outer")

    def __init__(self) -> None:
        #: the call got a fresh instance (instantiated for it), not a warm one
        self.cold = False
        #: fuel the call used, when its component runs metered (a fuel limit)
        self.fuel: int | None = None
        #: CPU seconds of the thread(s) that ran it, less nested co-located calls
        self.cpu_s = 0.0
        #: memory its instance has touched so far, in bytes (its peak linear memory, roughly)
        self.memory_bytes = 0
        self._cpu0 = 0.0
        self._faults0 = 0
        self._outer: list[float] | None = None

    def begin(self) -> None:
        self._faults0 = _getrusage(_THREAD).ru_minflt
        self._cpu0 = _thread_time()
        self._outer = getattr(_nested, "acc", None)
        _nested.acc = [0.0, 0]  # what nested calls on this thread cost, taken out of ours

    def end(self) -> int:
        """Stop counting; the bytes this call touched itself (nested calls' taken out)."""
        cpu = _thread_time() - self._cpu0
        faults = _getrusage(_THREAD).ru_minflt - self._faults0
        inner = _nested.acc
        outer = _nested.acc = self._outer
        if outer is not None:  # we ran nested in another call: it does not count us again
            outer[0] += cpu
            outer[1] += faults
        self.cpu_s += max(0.0, cpu - inner[0])
        return max(0, int(faults - inner[1])) * PAGE_SIZE
