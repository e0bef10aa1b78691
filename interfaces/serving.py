"""Serving one call: the same span, trace context, error reply and counts, whichever way it came in.

A call enters a provider or a worker through its RPC server (from NATS, or from a
host-local socket: ``interfaces/rpc_server.py``), as a co-located call on a Wasm thread
(``host/workers/colocated.py``), or as an HTTP request on a connection handed to a worker
(``host/workers/handoff.py``). Each runs its handler through :func:`serve` (on the event
loop) or :func:`serve_sync` (on a thread), which

* makes the server span ``serve <target> <operation>``, a child of the caller's, when
  something records spans (:func:`~trellis.interfaces.tracing.enabled`); otherwise passes
  the caller's trace context through to the calls the handler makes
  (:func:`~trellis.interfaces.tracing.pass_through`), and ends that when the call ends;
* raises whatever the handler raised as the :class:`RpcError` its caller gets
  (:func:`error_of`): an ``RpcError`` as it is, another ``TrellisError`` with its code and
  message, anything else as ``internal`` (a bug: logged with its traceback);
* counts the call ``served`` or ``failed`` in the ``counts`` it is given.

Each way then says the outcome in its own terms: an error reply frame, an ``RpcError``
raised on the caller's thread, an HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import trace as otel_trace

from . import tracing
from .envelope import Invocation
from .errors import ErrorCode, TrellisError
from .rpc_client import RpcError

log = logging.getLogger(__name__)

T = TypeVar("T")
_SERVER = otel_trace.SpanKind.SERVER
_NO_COUNTS: dict[str, int] = {"served": 0, "failed": 0}  # counted, never read


def serve_span(inv: Invocation, **attributes: Any) -> Any:
    """The server span of serving ``inv``, a child of the caller's."""
    return tracing.tracer().start_as_current_span(
        f"serve {inv.target} {inv.operation}", context=tracing.extract(inv.trace) if inv.trace else None,
        kind=_SERVER,
        attributes={"trellis.invocation_id": inv.id, "trellis.source": inv.source, "trellis.attempt": inv.attempt,
                    **attributes},
    )


def error_of(exc: BaseException, inv: Invocation) -> RpcError:
    """What serving ``inv`` failed with, as the error its caller gets (code, message, kind)."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, TrellisError):
        return RpcError(exc.message, exc.code)
    log.error("invocation %s %s failed", inv.id, inv.operation, exc_info=exc)
    return RpcError(f"{exc.__class__.__name__}: {exc}", ErrorCode.INTERNAL)


async def serve(inv: Invocation, run: Callable[..., Awaitable[T]], *args: Any,
                counts: dict[str, int] | None = None, attributes: dict[str, Any] | None = None) -> T:
    """``await run(*args)`` as the serving of ``inv`` (see the module doc); failures raise ``RpcError``."""
    if counts is None:
        counts = _NO_COUNTS
    try:
        if tracing.enabled():
            with serve_span(inv, **attributes) if attributes else serve_span(inv):
                result = await run(*args)
        elif inv.trace:  # no span: calls made while serving carry the caller's context on
            token = tracing.pass_through(inv.trace)
            try:
                result = await run(*args)
            finally:
                tracing.end_pass_through(token)
        else:
            result = await run(*args)
    except Exception as exc:
        counts["failed"] += 1
        raise error_of(exc, inv) from None
    counts["served"] += 1
    return result


def serve_sync(inv: Invocation, run: Callable[..., T], *args: Any, counts: dict[str, int] | None = None,
               attributes: dict[str, Any] | None = None) -> T:
    """:func:`serve` for a call run on this thread (a co-located call on a Wasm thread)."""
    if counts is None:
        counts = _NO_COUNTS
    try:
        if tracing.enabled():
            with serve_span(inv, **attributes) if attributes else serve_span(inv):
                result = run(*args)
        else:  # no span: calls made while serving carry the caller's context on (or none, not the
            # context of the call this thread is nested in)
            token = tracing.pass_through(inv.trace)
            try:
                result = run(*args)
            finally:
                tracing.end_pass_through(token)
    except Exception as exc:
        counts["failed"] += 1
        raise error_of(exc, inv) from None
    counts["served"] += 1
    return result
