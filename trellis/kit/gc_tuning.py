"""The garbage collector's settings for Trellis's long-running processes.

CPython runs a collection of the youngest generation every 700 net container
allocations and, every so often, one of the whole heap. A worker or provider
handling one large value (a query result of 12,000 rows is ~300,000 lists, dicts
and strings to decode, convert and lower) allocates that many containers in a
burst, and each of those collections walks objects that are not garbage: decoding
that result took 70-120 ms with collections on and 20 ms without, in a process
with a heap the size of a worker's.

So every Trellis worker and provider process, once started, moves what it has built
so far (modules, the engine, wasmtime-py's type caches) out of the collector's view
(``gc.freeze()``: it is never freed anyway) and collects the youngest generation
every :data:`DEFAULT_THRESHOLD` allocations instead of 700. Garbage without cycles is
freed at once as always; cycles wait a little longer. ``TRELLIS_GC_THRESHOLD`` sets
the threshold; ``default`` keeps Python's own settings.

Measured (docs/performance.md): ``GET /orders`` of the orders app with 12,001 orders
took 2.19 s with Python's settings, 1.98 s with the freeze alone and 1.91 s with the
freeze and a threshold of 20,000; small requests (the HTTP benchmarks) did not move.
"""

from __future__ import annotations

import gc
import logging
import os

log = logging.getLogger(__name__)

ENV = "TRELLIS_GC_THRESHOLD"
DEFAULT_THRESHOLD = 10_000


def threshold_from_env() -> int | None:
    """The threshold ``TRELLIS_GC_THRESHOLD`` asks for (None: ``default``, Python's own settings);
    a value that is not a positive number is logged and :data:`DEFAULT_THRESHOLD` used. For a
    process's settings, read once at its start (a worker gets its host's in its boot message)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value == "default":
        return None
    if not value:
        return DEFAULT_THRESHOLD
    try:
        threshold = int(value)
        if threshold < 1:
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a positive number or 'default'; using %d", ENV, value, DEFAULT_THRESHOLD)
        return DEFAULT_THRESHOLD
    return threshold


def tune(threshold: int | None = DEFAULT_THRESHOLD) -> bool:
    """Apply the settings (call once a process has started): freeze what was built so far and
    collect the youngest generation every ``threshold`` allocations; None keeps Python's own
    settings. Whether they were changed."""
    if threshold is None:
        return False
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    return True
