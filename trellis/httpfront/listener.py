"""One listening socket: its routes, its connections, and how a request is answered."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import trace as otel_trace

from trellis.interfaces import tracing

from . import wire
from .config import ServerConfig, format_address
from .gateway import CallFailed
from .protocol import HttpConnection, Request
from .routes import Route, RouteTable
from .streaming import HttpExchange

log = logging.getLogger("trellis.providers.http_server")
_ids = itertools.count(1)


class Caller(Protocol):
    """What answers a request: the lattice (:class:`.gateway.NatsCaller`), or a test double.

    A caller whose listener :attr:`~Listener.streams` a route also takes ``exchange=`` (a
    :class:`.streaming.HttpExchange`) for that route's requests: their body arrives through it
    (the record's ``body`` is empty unless it all came with the head) and their response may
    go out through it (the call's result is then the head's record, already sent)."""

    async def call(self, target: str, link_name: str, request: dict[str, Any], *, timeout_s: float,
                   instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None = None,
                   invocation_id: str | None = None) -> Any: ...


def tracing_enabled() -> bool:
    """True when an OpenTelemetry SDK is installed (``OTEL_TRACES_EXPORTER``); otherwise spans
    are skipped and an incoming ``traceparent`` is passed through to the component as is."""
    return not isinstance(otel_trace.get_tracer_provider(),
                          (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider))


class Listener:
    """Serves ``table``'s routes on ``address`` until closed.

    With a ``handoff`` (:mod:`.handoff`), a connection it accepts may be handed to a worker
    process of this host that serves the routes' components, which then answers its requests.
    A worker builds its own ``Listener`` for connections it was handed (never opened).
    """

    def __init__(self, address: tuple[str, int], table: RouteTable, caller: Caller, settings: ServerConfig,
                 handoff: Any = None, tls: ssl.SSLContext | None = None) -> None:
        self.id = next(_ids)
        self.address = address
        self._table = table
        self.caller = caller
        #: HTTPS: the provider terminates TLS itself, so nothing is handed to a worker
        self.tls = tls
        self.handoff = None if tls is not None else handoff
        self.settings = settings
        self.idle_timeout_s = settings.idle_timeout_ms / 1000
        self.read_timeout_s = settings.read_timeout_ms / 1000
        self.max_header_bytes = settings.max_header_bytes
        self.connections: set[HttpConnection] = set()
        self.date = wire.DateHeader()
        self.server: asyncio.Server | None = None
        self.traced = tracing_enabled()
        self.stats = {"requests": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        #: whether a route's requests are served as streams (``streaming.py``); a worker that serves
        #: wasi:http components on handed connections sets it, otherwise requests arrive whole
        self.streams: Callable[[Route], bool] | None = None
        self._new_id = getattr(caller, "new_id", None) or (lambda: uuid.uuid4().hex)

    @property
    def table(self) -> RouteTable:
        return self._table

    @table.setter
    def table(self, table: RouteTable) -> None:
        changed = table != self._table
        self._table = table
        if changed and self.handoff is not None:
            self.handoff.changed(self)

    def hand_off(self, transport: asyncio.BaseTransport) -> bool:
        """A connection just accepted: True when a worker took it (``transport`` is then closed
        here without a byte read or written; the worker owns the connection)."""
        if self.handoff is None:
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        transport.pause_reading()  # type: ignore[attr-defined]  # the server's transports are socket transports
        if self.handoff.take(self, sock):
            transport.abort()  # type: ignore[attr-defined]  # the server's transports are socket transports
            return True
        transport.resume_reading()  # type: ignore[attr-defined]  # the server's transports are socket transports
        return False

    @property
    def text(self) -> str:
        return ("https://" if self.tls is not None else "") + format_address(self.address)

    async def open(self) -> None:
        """Bind and listen; raises OSError (address in use, permission denied, ...)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: HttpConnection(self), self.address[0], self.address[1],
                                               reuse_address=True, backlog=1024, ssl=self.tls)

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.handoff is not None:
            self.handoff.closed(self)  # workers close the connections they were handed

    async def close(self, grace_s: float) -> None:
        """Stop accepting; idle connections close now, busy ones after their answer (at most ``grace_s``)."""
        self.stop_accepting()
        for conn in list(self.connections):
            conn.drain()
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            except TimeoutError:
                pass
            self.server = None

    # --- answering ----------------------------------------------------------------------

    async def answer(self, req: Request, conn: HttpConnection) -> tuple[bytes, bytes, bool]:
        """(head, body, keep the connection) for one request; never raises but for cancellation."""
        self.stats["requests"] += 1
        head_only = req.method == "HEAD"
        if req.reject is not None:
            return self._error(req.reject[0], req.reject[1], req, req.keep_alive and not conn.closing())
        route = req.route
        assert route is not None
        cfg = route.config
        inv_id = self._new_id()
        exchange = req.exchange
        body = req.body
        if exchange is not None:
            body = exchange.settle() or b""  # a body here whole already is passed as usual
        record = wire.request_record(req.method, req.target, req.headers, body)
        try:
            if self.traced:
                result = await self._traced_call(req, route.target, route.link_name, record, inv_id,
                                                 **({"exchange": exchange} if exchange else {}))
            else:
                result = await self.caller.call(
                    route.target, route.link_name, record, timeout_s=cfg.timeout_ms / 1000,
                    instance_wait_s=cfg.instance_wait_ms / 1000, retry_lost=req.method in wire.IDEMPOTENT,
                    trace=req.trace, invocation_id=inv_id, **({"exchange": exchange} if exchange else {}))
        except CallFailed as failed:
            if exchange is not None:
                return self._streamed_failure(exchange, req, failed.status, failed.message, conn)
            keep_alive = req.keep_alive and not conn.closing() and failed.status != wire.TOO_LARGE
            return self._error(failed.status, failed.message, req, keep_alive)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("answering %s %s on %s failed", req.method, req.target[:200], self.text)
            if exchange is not None:
                return self._streamed_failure(exchange, req, 500, f"the HTTP front failed; invocation {inv_id}", conn)
            return self._error(500, f"the HTTP front failed; invocation {inv_id}", req, False)
        if exchange is not None:
            if exchange.started:  # written as the component wrote it
                return b"", b"", req.keep_alive and not conn.closing() and exchange.finished_cleanly()
            if exchange.refused is not None:  # the body passed max_body_bytes before anything was answered
                return self._error(*exchange.refused, req, False)
        keep_alive = req.keep_alive and not conn.closing()  # asked now: the listener may be closing
        if exchange is not None and not exchange.complete:
            keep_alive = False  # the rest of the body is still on its way
        try:
            head, body, keep = wire.response_head(result, head_only=head_only, keep_alive=keep_alive,
                                                  http10=req.http10, date=self.date)
        except wire.InvalidResponse as exc:
            log.warning("invocation %s: %s sent an invalid response: %s", inv_id, route.target, exc)
            return self._error(wire.FAILED, f"component {route.target!r} sent an invalid response ({exc}); "
                                            f"invocation {inv_id}", req, keep_alive)
        self._count(result["status"])
        return head, body, keep

    async def _traced_call(self, req: Request, target: str, link_name: str, record: dict[str, Any],
                           inv_id: str, **exchange: Any) -> Any:
        cfg = req.route.config  # type: ignore[union-attr]  # a request that gets here has its route
        with tracing.tracer().start_as_current_span(
            f"HTTP {req.method}", context=tracing.extract(req.trace or {}), kind=otel_trace.SpanKind.SERVER,
            attributes={"http.request.method": req.method, "url.path": req.target[:500],
                        "trellis.target": target, "trellis.invocation_id": inv_id},
        ) as span:
            result = await self.caller.call(
                target, link_name, record, timeout_s=cfg.timeout_ms / 1000,
                instance_wait_s=cfg.instance_wait_ms / 1000, retry_lost=req.method in wire.IDEMPOTENT,
                trace=tracing.inject(), invocation_id=inv_id, **exchange)
            if isinstance(result, dict) and isinstance(result.get("status"), int):
                span.set_attribute("http.response.status_code", result["status"])
            return result

    def _streamed_failure(self, exchange: HttpExchange, req: Request, status: int, message: str,
                          conn: HttpConnection) -> tuple[bytes, bytes, bool]:
        """A streamed request's call failed: the status, unless its head went out (then the
        connection closes: the client sees the body cut short)."""
        if exchange.started:
            conn.abort_stream()
            return b"", b"", False
        if exchange.refused is not None:
            status, message = exchange.refused
        keep_alive = req.keep_alive and not conn.closing() and exchange.complete and status != wire.TOO_LARGE
        return self._error(status, message, req, keep_alive)

    def count(self, status: int) -> None:
        """A response a stream wrote itself."""
        self._count(status)

    def _error(self, status: int, message: str, req: Request, keep_alive: bool) -> tuple[bytes, bytes, bool]:
        self._count(status)
        head, body = wire.error_head(status, message, head_only=req.method == "HEAD", keep_alive=keep_alive,
                                     http10=req.http10, date=self.date)
        return head, body, keep_alive

    def _count(self, status: int) -> None:
        key = ("1xx", "2xx", "3xx", "4xx", "5xx")[min(max(status // 100, 1), 5) - 1]
        if key in self.stats:
            self.stats[key] += 1
