"""The invocation record: one typed record per invocation a worker finishes, handed to observers.

Every way a call enters a worker ends here once: an RPC from NATS (or from a
provider's local socket), run inline on the event loop or on a Wasm thread; a
co-located call from another component of the worker; an HTTP request on a
connection handed to the worker. :meth:`Worker.record` builds an
:class:`InvocationRecord` and passes it to each observer in
``Worker.observers`` (metrics, per-app usage, ``trellis spy``).

Observers are plain callables ``(InvocationRecord) -> None``. They are called
on the thread that finished the call — the worker's event loop, or a Wasm
thread — right after it, before the reply is sent: they must be quick and
thread-safe, and hand anything slow (a NATS publish) to the loop
(``loop.call_soon_threadsafe``). An observer that raises is logged once and
left in place; the call is not affected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trellis.host.runtime.probe import CallProbe
from trellis.interfaces.errors import TrellisError
from trellis.interfaces.rpc_client import RpcError

if TYPE_CHECKING:
    from trellis.interfaces.envelope import Invocation

    from .registry import Served

log = logging.getLogger(__name__)

__all__ = ["InvocationRecord", "Observer", "Observers", "VIA_COLOCATED", "VIA_HANDOFF", "VIA_RPC"]

#: how the call entered the worker
VIA_RPC = "rpc"
VIA_COLOCATED = "colocated"
VIA_HANDOFF = "handoff"


@dataclass(slots=True)
class InvocationRecord:
    """One finished invocation of a component on a worker. Observers only read it (it is not
    frozen: a frozen dataclass of this many fields costs ~4 µs more to build, on every call)."""

    #: the app the component belongs to (its ``trellis.app`` annotation), "" when started by hand
    app: str
    #: the component id
    component: str
    #: ``ns:pkg/iface.func`` (or a world-level ``func``)
    function: str
    #: who called: the source of the invocation (a component id, a provider id, a host id)
    caller: str
    #: the host id, and the worker's index on it
    host: str
    worker: int
    #: ``rpc`` | ``colocated`` | ``handoff`` (VIA_*)
    via: str
    #: run on the worker's event loop (``inline.py``) rather than a Wasm thread
    inline: bool
    invocation_id: str
    #: when it started, Unix seconds
    start: float
    #: wall time in this worker, seconds (waiting for a Wasm thread included)
    wall_s: float
    #: CPU time of the thread(s) that ran it, seconds (``host/runtime/probe.py``)
    cpu_s: float
    #: the instance's peak linear memory so far, bytes (pages touched: ``probe.py``)
    memory_bytes: int
    #: fuel used, when the component runs metered (has a fuel limit); else None
    fuel: int | None
    #: "ok" or "error"
    outcome: str
    #: the error's kind (``timeout``, ``trap``, ``missing_link``, ...) when outcome is "error"
    error_kind: str | None
    #: a fresh instance was made for this call (else a warm one was reused)
    cold: bool

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


Observer = Callable[[InvocationRecord], None]


class Observers:
    """The worker's list of observers; :meth:`emit` hands a record to each."""

    def __init__(self) -> None:
        self._observers: tuple[Observer, ...] = ()
        self._failed: set[int] = set()

    def add(self, observer: Observer) -> None:
        self._observers = (*self._observers, observer)

    def remove(self, observer: Observer) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def emit(self, record: InvocationRecord) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:
                if id(observer) not in self._failed:
                    self._failed.add(id(observer))
                    log.exception("invocation observer %r failed (logged once)", observer)


def error_kind(exc: BaseException) -> str:
    """The kind a failed call reports, as its caller sees it."""
    if isinstance(exc, RpcError):
        return exc.kind or str(exc.code)
    if isinstance(exc, TrellisError):
        return str(exc.code)
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "internal"


def build(served: Served, inv: Invocation, host: str, worker: int, via: str, inline: bool,
          probe: CallProbe, start: float, t0: float, exc: BaseException | None) -> InvocationRecord:
    """The record of a call of ``served`` that began at ``start`` (Unix) / ``t0`` (perf_counter)."""
    return InvocationRecord(
        served.app, served.component_id, inv.operation, inv.source, host, worker, via, inline, inv.id, start,
        time.perf_counter() - t0, probe.cpu_s, probe.memory_bytes, probe.fuel,
        "ok" if exc is None else "error", None if exc is None else error_kind(exc), probe.cold)
