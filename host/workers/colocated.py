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
  Values a round trip gives back unchanged (:func:`wire_identical`: numbers in
  msgpack's range, booleans, ``None``, short ASCII strings) skip the decoding of
  the request and both ways of the reply, which are then known to give them back
  as they are.
* **Errors** carry the same message and code as the remote reply would.
* **Limits.** The target's own timeout, memory cap and fuel apply; its deadline
  is also capped by the invocation's, and a call that outlives it fails as the
  RPC client would report it ("timed out").
* **Tracing.** The target runs in a ``serve <target> <operation>`` server span,
  the child of the caller's, as on the remote path; when nothing records spans
  (``tracing.enabled()``), none is made and its calls carry the caller's trace
  context on, as the RPC server does then.
* **Depth.** Nesting is bounded (``calls.local_calls_max_depth`` of
``host/tuning.py``, ``TRELLIS_LOCAL_CALLS_MAX_DEPTH``, default 8
  levels per thread): deeper calls, e.g. a component calling itself, go over
  NATS, where they end as they always did (at the deadline, or when the
  target's slots and queue are full). Wasm threads get a 16 MiB stack
  (:data:`WASM_THREAD_STACK`) so that eight nested stores fit.

``TRELLIS_LOCAL_CALLS=0`` turns it off (every call goes over NATS), for
comparison and debugging.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from trellis.host.runtime.imports import CURRENT_CALL
from trellis.interfaces.envelope import MAX_FRAME, EnvelopeError, Invocation, Reply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.serving import serve_sync

from . import dispatch
from .records import VIA_COLOCATED
from .slots import Slots

if TYPE_CHECKING:
    from .calls import Calls
    from .registry import Registry, Served

__all__ = ["Colocated", "REMOTE", "Slots", "WASM_THREAD_STACK"]

log = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 8
#: stack size of Wasm threads: nested stores each may use up to the engine's wasm stack (512 KiB)
WASM_THREAD_STACK = 16 * 1024 * 1024

#: returned by :meth:`Colocated.call` when the call has to go over the lattice
REMOTE: Any = object()

_DEPTH: ContextVar[int] = ContextVar("trellis_colocated_depth", default=0)
_SPAN_ATTRIBUTES = {"trellis.colocated": True}


class Colocated:
    """Runs calls to components this worker serves on the calling thread (see the module doc)."""

    def __init__(self, served: Registry, calls: Calls, served_by: str,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.served = served
        self.calls = calls
        self.served_by = served_by
        self.max_depth = max_depth

    def call(self, call: Invocation, max_payload: int) -> Any:
        """The call's result; :data:`REMOTE` when it must go over the lattice. Raises ``RpcError``
        exactly as the RPC client would for the remote call."""
        served = self.served.get(call.target)
        depth = _DEPTH.get()
        decision = dispatch.link(served is not None, served is not None and served.taking_calls, depth,
                                 self.max_depth, call.remaining_s())
        if decision.way is dispatch.REMOTE:
            if decision.why is dispatch.Why.TOO_DEEP:
                served.colocated["too_deep"] += 1  # type: ignore[union-attr]  # set for a component whose calls reach here
            return REMOTE
        assert served is not None and served.slots is not None
        slots = served.slots
        same = wire_identical(call.args)  # then the decoded request would be the call itself
        frame = b""
        if not same or not dispatch.fits(frame_bound(call), max_payload):
            try:
                frame = call.encode()
            except EnvelopeError:
                return REMOTE  # fails there the same way
            if not dispatch.fits(len(frame), max_payload):
                return REMOTE
        if not slots.try_acquire():
            served.colocated["no_slot"] += 1
            return REMOTE
        depth_token = _DEPTH.set(depth + 1)
        # the target's instance must not see the caller's call context (resource drops, ...)
        call_token = CURRENT_CALL.set(None)
        try:
            return self._serve(served, call if same else Invocation.decode(frame))
        finally:
            CURRENT_CALL.reset(call_token)
            _DEPTH.reset(depth_token)
            slots.release()

    def _run(self, served: Served, inv: Invocation, probe: Any) -> Any:
        handler = self.calls.handler(served, inv)  # its calls: children of the span, or the caller's context
        return self.calls.execute(served, inv, handler, inv.remaining_s(), probe)

    def _serve(self, served: Served, inv: Invocation) -> Any:
        """What ``RpcServer`` and ``Calls.invoke`` do for a remote call, then the reply's round trip."""
        calls = self.calls
        probe = calls.probe()
        start, t0 = time.time(), time.perf_counter()
        try:  # as the RPC server serves it: its span (or the caller's trace context), its errors, its counts
            result = serve_sync(inv, self._run, served, inv, probe, counts=served.colocated,
                                attributes=_SPAN_ATTRIBUTES)
        except RpcError as exc:
            calls.record(served, inv, VIA_COLOCATED, False, probe, start, t0, exc)
            raise
        calls.record(served, inv, VIA_COLOCATED, False, probe, start, t0, result=result)
        if wire_identical((result,)):  # the reply's round trip would give it back as it is (and it fits)
            return result
        try:
            reply = Reply(id=inv.id, ok=True, result=result, served_by=self.served_by).encode()
        except EnvelopeError as exc:
            raise RpcError(f"result cannot be encoded: {exc}", ErrorCode.INTERNAL) from None
        if len(reply) > MAX_FRAME:  # a larger reply than fits one NATS message crosses it in parts
            raise RpcError(f"{inv.target}: reply of {len(reply)} bytes exceeds the {MAX_FRAME}-byte frame "
                           "limit", ErrorCode.INVOCATION_FAILED, "too_large")
        return Reply.decode(reply).result


#: the longest string :func:`wire_identical` vouches for (a reply of it fits any frame)
SHORT_STR = 1024
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack carries as an integer


def wire_identical(values: tuple[Any, ...] | list[Any]) -> bool:
    """Whether a msgpack round trip (``envelope``) gives back each of ``values`` as it is, so
    encoding and decoding them can be skipped: an ``int`` msgpack can carry, a ``float``, a
    ``bool``, ``None``, or an ASCII ``str`` of at most :data:`SHORT_STR` characters."""
    for v in values:
        cls = v.__class__
        if cls is int:
            if not _INT_MIN <= v <= _INT_MAX:
                return False
        elif cls is str:
            if len(v) > SHORT_STR or not v.isascii():
                return False
        elif cls is not float and cls is not bool and v is not None:
            return False
    return True


def frame_bound(call: Invocation) -> int:
    """At most how many bytes ``call`` encodes to, when its arguments are :func:`wire_identical`
    (four bytes a character for its names, nine per argument and a short string's own)."""
    chars = (len(call.target) + len(call.interface) + len(call.function) + len(call.source) + len(call.id)
             + len(call.link))
    for k, v in call.trace.items():
        chars += len(k) + len(v)
    size = 256 + 4 * chars
    for a in call.args:
        size += len(a) + 5 if a.__class__ is str else 9
    return size
