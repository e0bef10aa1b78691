"""Idle components give their compiled code back: *parking*.

A loaded component holds its compiled code (wasmtime's ``Component``: the artifact
``mmap``'d from the compile cache, and wasmtime's tables of it) in every worker
process that serves it, called or not. With many apps on a host, most of them idle,
that is most of a worker's memory. A component that has had no instance and no call
for ``after_s`` seconds is *parked*: its ``Component`` is dropped (what it describes,
its import and export tables, its linker and its RPC subscription stay), and the next
instantiation loads it again from the artifact on disk, a ``deserialize_file`` of a
few milliseconds (no compiling: the artifact stays in the compile cache).

``TRELLIS_PARK_IDLE_S`` sets ``after_s`` for a host's workers (default 30 s; ``off``
never parks). Parking needs the compile cache on disk; without it nothing is parked.

:func:`load_parkable` loads a component so that it can be parked (and, when the
artifact of its digest is already compiled, without reading the ``.wasm`` at all);
:class:`Parking` decides, from each invoker's counters, which components have been
idle long enough.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import CompileCache
from .component import LoadedComponent
from .engine import RuntimeEngine
from .producers import processed_by

if TYPE_CHECKING:
    from .invoke import Invoker

__all__ = ["DEFAULT_PARK_AFTER_S", "PARK_BATCH_S", "Parking", "load_parkable", "park_after_s"]

#: seconds without an instance or a call before a component's code is dropped
DEFAULT_PARK_AFTER_S = 30.0
#: once one component is due, those idle for ``after_s`` minus this much (at most a sixth of
#: ``after_s``) are parked with it (:class:`Parking`)
PARK_BATCH_S = 5.0
ENV = "TRELLIS_PARK_IDLE_S"


def park_after_s(environ: dict[str, str] | None = None) -> float | None:
    """``TRELLIS_PARK_IDLE_S``: seconds (a number ≥ 0), ``off`` (None: never), default 30."""
    raw = (environ if environ is not None else os.environ).get(ENV, "").strip().lower()
    if not raw:
        return DEFAULT_PARK_AFTER_S
    if raw in ("off", "never", "none"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: give seconds (a number, 0 or more) or 'off'") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(f"{ENV}={raw!r}: give seconds (a number, 0 or more) or 'off'")
    return value


def load_parkable(engine: RuntimeEngine, path: Path, cache: CompileCache, digest: str | None = None,
                  parkable: bool = True) -> LoadedComponent:
    """The component in the ``.wasm`` file ``path``, loaded through ``cache``'s directory.

    When the artifact of ``digest`` (``sha256:…`` or bare hex, as the host knows it) is
    compiled already, the ``.wasm`` is never read: it is deserialized from the artifact.
    Otherwise the file is read, compiled and the artifact written. With ``parkable`` (and a
    cache directory), the component can be parked and is reloaded from that artifact.
    """
    component, digest, artifact = cache.load_file(engine, path, digest)
    reload: Callable[[], object] | None = None
    if parkable and artifact is not None:
        known = digest

        def reload() -> object:
            return cache.load_file(engine, path, known)[0]
    loaded = LoadedComponent(engine, component, digest, reload=reload)  # type: ignore[arg-type]  # the cache returns the component untyped
    loaded.artifact = artifact if reload is not None else None
    loaded.tools = processed_by(path)  # (a few small reads of the file, even when it was not compiled now)
    return loaded


@dataclass
class _Seen:
    activity: int
    since: float


class Parking:
    """Which components have been idle (no instance, no new call) for ``after_s`` seconds.

    :meth:`due` is called periodically (the worker's idle sweep, every second) with the
    invokers by key; it compares each invoker's counters with what it saw last, so a
    component that served even one call since the last look starts its idle time again.

    Parking comes in batches: once one component is due, every component idle for at least
    ``after_s`` minus a slack (:data:`PARK_BATCH_S`, at most a sixth of ``after_s``) is parked
    with it. Apps called in one burst (a deploy, a crawler, a bench's warm-up) then give their
    code back in one or two sweeps instead of one sweep a second for as long as the burst
    lasted: each sweep that parks collects young garbage, reads the process's mappings and
    trims the C heap (1-7 ms at N = 50 on a loaded machine), and those waves were most of an
    idle worker's CPU in the minute after traffic.
    """

    def __init__(self, after_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        #: components parked, and loaded again (by a call) after parking
        self.parked = 0

    def due(self, invokers: Iterable[tuple[str, Invoker]]) -> list[tuple[str, Invoker]]:
        """The invokers to park now (idle long enough, not parked yet)."""
        if self.after_s is None:
            return []
        now = self._clock()
        idle: list[tuple[float, str, Invoker]] = []
        keys = set()
        for key, inv in invokers:
            keys.add(key)
            stats = inv.stats
            activity = stats.calls + stats.instantiations
            seen = self._seen.get(key)
            if seen is None or seen.activity != activity or inv.live_instances:
                self._seen[key] = _Seen(activity, now)
                continue
            if inv.parkable and not inv.parked and not inv.closed:
                idle.append((now - seen.since, key, inv))
        for gone in set(self._seen) - keys:
            del self._seen[gone]
        if not idle or max(age for age, _, _ in idle) < self.after_s:
            return []
        enough = self.after_s - min(PARK_BATCH_S, self.after_s / 6)
        return [(key, inv) for age, key, inv in idle if age >= enough]


def park_all(due: Iterable[tuple[str, Invoker]]) -> list[str]:
    """Park each of ``due`` that still has no instance (run it on a thread: it takes the
    lifecycle lock); the keys parked. Python's cyclic garbage is collected (it may hold the
    last reference to the code of a component that served calls: the young generations, and
    the whole heap only if a parked artifact is still mapped after that) and the freed memory
    goes back to the system."""
    from trellis.kit.freemem import give_back_freed_memory

    parked: list[str] = []
    artifacts: set[str] = set()
    for key, inv in due:
        if inv.park():
            parked.append(key)
            artifact = inv.loaded.artifact
            if artifact is not None:
                artifacts.add(str(artifact))
    if parked:
        give_back_freed_memory(collect_cycles=True, unmapped=artifacts)
    return parked
