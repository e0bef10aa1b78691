"""Co-located component calls: a call to a component this worker serves runs here, nested.

When a component calls another component through a link and this worker process
serves the target too, the call runs on the calling Wasm thread, in the target's
own ``Invoker`` (its own store, limits and reuse policy), instead of going out
over NATS and back in through this same worker's ``RpcServer``. What the caller
sees is what the remote path gives it:

* **Admission.** The target's concurrency slots on this worker (its share of
  ``max_instances``) are one pool, :class:`Slots`, shared by its ``RpcServer``
  (which queues) and by co-located calls (which never wait): with no free slot,
  or while remote calls queue for one, the call goes over NATS exactly as before,
  so another worker's or host's instance can take it.
* **Values.** Arguments are encoded to the wire ``Invocation`` and decoded again,
  the result to a ``Reply`` and back: the values the target and the caller see
  are those of a msgpack round trip (tuples become lists, ...). A request too
  large for one NATS message goes the remote way, failing as it would there; a
  reply may be as large as a frame (``envelope.MAX_FRAME``), as over NATS.
* **Errors** carry the same message and code as the remote reply would.
* **Limits.** The target's own timeout, memory cap and fuel apply; its deadline
  is also capped by the invocation's, and a call that outlives it fails as the
  RPC client would report it ("timed out").
* **Tracing.** The target runs in a ``serve <target> <operation>`` server span,
  the child of the caller's, as on the remote path; when nothing records spans
  (``tracing.enabled()``), none is made and its calls carry the caller's trace
  context on, as the RPC server does then.
* **Depth.** Nesting is bounded (``TRELLIS_LOCAL_CALLS_MAX_DEPTH``, default 8
  levels per thread): deeper calls, e.g. a component calling itself, go over
  NATS, where they end as they always did (at the deadline, or when the
  target's slots and queue are full). Wasm threads get a 16 MiB stack
  (:data:`WASM_THREAD_STACK`) so that eight nested stores fit.

``TRELLIS_LOCAL_CALLS=0`` turns it off (every call goes over NATS), for
comparison and debugging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from trellis.host.runtime.imports import CURRENT_CALL
from trellis.interfaces.envelope import MAX_FRAME, EnvelopeError, Invocation, Reply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.serving import serve_sync
from trellis.kit.switches import switched_on

from .records import VIA_COLOCATED

if TYPE_CHECKING:
    from .worker import Served, Worker

log = logging.getLogger(__name__)

ENABLE_ENV = "TRELLIS_LOCAL_CALLS"
DEPTH_ENV = "TRELLIS_LOCAL_CALLS_MAX_DEPTH"
DEFAULT_MAX_DEPTH = 8
#: stack size of Wasm threads: nested stores each may use up to the engine's wasm stack (512 KiB)
WASM_THREAD_STACK = 16 * 1024 * 1024

#: returned by :meth:`Colocated.call` when the call has to go over the lattice
REMOTE: Any = object()

_DEPTH: ContextVar[int] = ContextVar("trellis_colocated_depth", default=0)
_SPAN_ATTRIBUTES = {"trellis.colocated": True}


def enabled(boot: dict[str, Any]) -> bool:
    """Co-located calls are on unless the boot or ``TRELLIS_LOCAL_CALLS`` says 0/false/no/off."""
    return switched_on(ENABLE_ENV, boot.get("local_calls"))


def max_depth(boot: dict[str, Any]) -> int:
    value = boot.get("local_calls_max_depth", os.environ.get(DEPTH_ENV))
    try:
        return max(0, int(value)) if value not in (None, "") else DEFAULT_MAX_DEPTH
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", DEPTH_ENV, value, DEFAULT_MAX_DEPTH)
        return DEFAULT_MAX_DEPTH


class Slots:
    """A component's concurrency slots on one worker, shared by its RPC server and co-located calls.

    Stands in for the ``asyncio.Semaphore`` of :class:`~trellis.interfaces.rpc_server.RpcServer`
    (``locked()``, ``await acquire()``, ``release()``), and adds :meth:`try_acquire`, which any
    thread may call and which never waits. Remote calls queue in FIFO order; a slot released
    while they wait goes to the first of them, so a co-located call never overtakes them.
    """

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._lock = threading.Lock()
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    def locked(self) -> bool:
        return self._free <= 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    async def acquire(self) -> bool:
        """On the event loop: a slot, waiting in line for one if none is free."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            fut: asyncio.Future[bool] = self._loop.create_future()
            self._waiters.append(fut)
        try:
            await fut
        except BaseException:  # cancelled (the caller's deadline while queued)
            with self._lock:
                try:
                    self._waiters.remove(fut)
                    handed = False
                except ValueError:  # release() already gave us the slot: pass it on
                    handed = True
            if handed:
                self.release()
            raise
        return True

    def release(self) -> None:
        """From any thread. A waiting remote call gets the slot; else it is free again."""
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            fut = self._waiters.popleft()
        if threading.get_ident() == self._loop_thread:
            self._grant(fut)
        else:
            try:
                self._loop.call_soon_threadsafe(self._grant, fut)
            except RuntimeError:  # the loop is closed: the worker is going away
                pass

    @staticmethod
    def _grant(fut: asyncio.Future[bool]) -> None:
        # a future cancelled after it was handed the slot: its acquire() passes the slot on
        if not fut.done():
            fut.set_result(True)


class Colocated:
    """Runs calls to components this worker serves on the calling thread (see the module doc)."""

    def __init__(self, worker: "Worker", max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.worker = worker
        self.max_depth = max_depth

    def call(self, call: Invocation, max_payload: int) -> Any:
        """The call's result; :data:`REMOTE` when it must go over the lattice. Raises ``RpcError``
        exactly as the RPC client would for the remote call."""
        served = self.worker.served.get(call.target)
        if served is None:
            return REMOTE
        slots = served.slots
        if slots is None or served.invoker.closed:
            return REMOTE
        depth = _DEPTH.get()
        if depth >= self.max_depth:
            served.colocated["too_deep"] += 1
            return REMOTE
        if call.remaining_s() <= 0:
            return REMOTE  # the RPC client reports a passed deadline its own way
        try:
            frame = call.encode()
        except EnvelopeError:
            return REMOTE  # fails there the same way
        if max_payload and len(frame) > max_payload:
            return REMOTE
        if not slots.try_acquire():
            served.colocated["no_slot"] += 1
            return REMOTE
        depth_token = _DEPTH.set(depth + 1)
        # the target's instance must not see the caller's call context (resource drops, ...)
        call_token = CURRENT_CALL.set(None)
        try:
            return self._serve(served, Invocation.decode(frame))
        finally:
            CURRENT_CALL.reset(call_token)
            _DEPTH.reset(depth_token)
            slots.release()

    def _run(self, served: "Served", inv: Invocation, probe: Any) -> Any:
        handler = self.worker.handler(served, inv)  # its calls: children of the span, or the caller's context
        return self.worker.execute(served, inv, handler, inv.remaining_s(), probe)

    def _serve(self, served: "Served", inv: Invocation) -> Any:
        """What ``RpcServer`` and ``Worker.invoke`` do for a remote call, then the reply's round trip."""
        worker = self.worker
        probe = worker.probe()
        start, t0 = time.time(), time.perf_counter()
        try:  # as the RPC server serves it: its span (or the caller's trace context), its errors, its counts
            result = serve_sync(inv, self._run, served, inv, probe, counts=served.colocated,
                                attributes=_SPAN_ATTRIBUTES)
        except RpcError as exc:
            worker.record(served, inv, VIA_COLOCATED, False, probe, start, t0, exc)
            raise
        worker.record(served, inv, VIA_COLOCATED, False, probe, start, t0, result=result)
        try:
            reply = Reply(id=inv.id, ok=True, result=result, served_by=self.worker.served_by).encode()
        except EnvelopeError as exc:
            raise RpcError(f"result cannot be encoded: {exc}", ErrorCode.INTERNAL) from None
        if len(reply) > MAX_FRAME:  # a larger reply than fits one NATS message crosses it in parts
            raise RpcError(f"{inv.target}: reply of {len(reply)} bytes exceeds the {MAX_FRAME}-byte frame "
                           "limit", ErrorCode.INVOCATION_FAILED, "too_large")
        return Reply.decode(reply).result
