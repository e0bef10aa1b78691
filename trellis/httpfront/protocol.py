"""One HTTP/1.1 connection: httptools parses, the listener answers, responses go out in order.

An ``asyncio.Protocol`` on httptools (llhttp, the parser of Node.js) rather than
a framework: this is the hot path of the platform's HTTP benchmark, and a
framework's request objects cost more than the rest of the front together (see
docs/http.md, "Why httptools"). What a framework would otherwise do is here:

* keep-alive (HTTP/1.1 by default, HTTP/1.0 on request) and pipelining: requests
  are answered one at a time, in order; reading pauses while 8 wait;
* limits decided as early as possible: the request line and headers
  (``max_header_bytes`` → 431), the body (``Content-Length`` over the route's
  ``max_body_bytes`` → 413 before a byte of it is read, a chunked body as it
  grows), a request that does not arrive whole in time (→ 408), an idle
  keep-alive connection (closed);
* ``Expect: 100-continue`` answered when the body is welcome; an ``Upgrade`` is
  not switched to: the request is answered as plain HTTP/1.1, then the
  connection closed;
* a malformed request (as llhttp judges it, e.g. both ``Content-Length`` and
  ``Transfer-Encoding``) gets 400 and the connection is closed;
* backpressure: a client that does not read its responses stops the connection
  from taking more requests;
* streams: on a route its listener :attr:`~.listener.Listener.streams` (a ``wasi:http``
  component, in the worker a connection was handed to), a request is answered from
  the end of its head, its body fed to an :class:`~.streaming.HttpExchange` as it
  arrives and its response written as the component writes it (``streaming.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from . import wire
from .streaming import HttpExchange

if TYPE_CHECKING:
    from .listener import Listener
    from .routes import Route

log = logging.getLogger("trellis.providers.http_server")

MAX_PIPELINE = 8
#: after a refusal, how long the rest of the request is read and dropped before closing
LINGER_S = 2.0
#: body bytes read and dropped for a request refused early (no route) before closing instead
MAX_DISCARD = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SMALL = 64 * 1024
_METHODS: dict[bytes, str] = {}
_NAMES: dict[bytes, str] = {}
_RESOLUTION = time.get_clock_info("monotonic").resolution


class Request:
    """One parsed request, waiting for its answer."""

    __slots__ = ("method", "target", "headers", "body", "keep_alive", "http10", "route", "reject", "trace",
                 "exchange")

    def __init__(self, method: str, target: str, headers: list[list[Any]], body: bytes, keep_alive: bool,
                 http10: bool, route: Route | None, reject: tuple[int, str] | None,
                 trace: dict[str, str] | None, exchange: HttpExchange | None = None) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http10 = http10
        self.route = route
        self.reject = reject
        self.trace = trace
        #: a streamed request (``streaming.py``): its body arrives through it, its response goes out through it
        self.exchange = exchange


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "listener", "loop", "transport", "parser", "_url", "_headers", "_host", "_length", "_expect", "_trace",
        "_body", "_size", "_head_size", "_route", "_reject", "_close_after", "_parsing", "_stopped",
        "_queue", "_task", "_timer", "_due", "_on_due", "_reading_paused", "_write_ready", "draining", "_unread",
        "_exchange", "streaming", "_body_paused", "_streams", "_stream_limit",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        #: the idle/read/linger deadline (_arm): the loop time it is due, what it calls, the loop's timer
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self._on_due: Any = None
        self._reading_paused = False
        self._write_ready: asyncio.Future[None] | None = None
        self._parsing = False
        self._stopped = False  # no more requests are read on this connection
        self._unread = False  # stopped mid-request: the client may still be sending its body
        self.draining = False  # the listener is closing: answer what was asked, then close
        self._exchange: HttpExchange | None = None  # the streamed request whose body is being read
        self.streaming: HttpExchange | None = None  # the streamed response being written
        self._body_paused = False  # reading paused until a streamed body is read further
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[list[Any]] = []
        self._host: bytes | None = None
        self._length: int | None = None
        self._expect = False
        self._trace: dict[str, str] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._route: Route | None = None
        self._reject: tuple[int, str] | None = None
        self._close_after = False
        self._streams = False  # the route streams: answered at the end of the head unless the body came with it
        self._stream_limit: int | None = None

    # --- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.listener.hand_off(transport):  # a worker of this host serves it
            self._stopped = True
            return
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.listener.connections.add(self)
        self._arm(self.listener.idle_timeout_s, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._stopped = True
        self.listener.connections.discard(self)
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._queue.clear()
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        for exchange in (self._exchange, self.streaming):
            if exchange is not None:
                exchange.lost()

    def pause_writing(self) -> None:
        if self._write_ready is None or self._write_ready.done():
            self._write_ready = self.loop.create_future()
        if self.streaming is not None:
            self.streaming.hold()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        if self.streaming is not None:
            self.streaming.release()

    def writes_paused(self) -> bool:
        return self._write_ready is not None and not self._write_ready.done()

    # --- streamed requests (streaming.py) -----------------------------------------------------

    def pause_body(self) -> None:
        """A streamed body's reader is behind: stop reading the socket."""
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = self._body_paused = True
            self.transport.pause_reading()

    def resume_body(self) -> None:
        if self._body_paused:
            self._body_paused = False
            if self.transport is not None and not self._stopped and len(self._queue) < MAX_PIPELINE:
                self._reading_paused = False
                self.transport.resume_reading()

    def abort_stream(self) -> None:
        """A streamed response cannot be completed: close the connection under it."""
        self._stopped = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return  # lingering after a refusal: what the client still sends is dropped
        if self._due is not None and self._task is None and not self._parsing:
            self._due = None  # idle no more
        try:
            self.parser.feed_data(data)
            if self._streams and self._exchange is None and self._parsing and not self._stopped:
                self._begin_stream()  # the body did not come whole with the head: streamed from here
        except httptools.HttpParserUpgrade:
            # the request is complete: it is answered as HTTP/1.1, without switching, then the
            # connection closes (what follows the request is in the other protocol)
            self._stop_reading()
        except httptools.HttpParserError as exc:
            if not self._stopped:
                self._refuse(wire.BAD_REQUEST, f"malformed request: {exc}")

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._stopped:
            return
        self._parsing = True
        self._reset()
        if self._task is None:
            self._arm(self.listener.read_timeout_s, self._read_expired)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.listener.max_header_bytes:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.listener.max_header_bytes:
            self._head_too_large()
            return
        key = _NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_NAMES) < 256:
                _NAMES[name] = key
        if key == "host":
            self._host = value
        elif key == "content-length":
            try:
                self._length = int(value)
            except ValueError:
                pass  # llhttp rejects it
        elif key == "expect":
            self._expect = value.lower() == b"100-continue"
        elif key == "traceparent" or key == "tracestate":
            if self._trace is None:
                self._trace = {}
            self._trace[key] = value.decode("latin-1")
        self._headers.append([key, value])

    def _head_too_large(self) -> None:
        if not self._stopped:
            self._refuse(wire.HEADERS_TOO_LARGE,
                         f"request line and headers exceed {self.listener.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        if self._stopped:
            return
        try:
            _, path = wire.origin_form(self._url)
        except (ValueError, UnicodeError) as exc:
            self._refuse(wire.BAD_REQUEST, f"bad request target: {exc}")
            return
        route = self.listener.table.match(self._host, path)
        if route is None:
            host = _host_text(self._host)
            self._reject = (wire.NO_ROUTE, f"nothing is served at {host}{path[:200]}")
            if self._length is not None and self._length > MAX_DISCARD:
                self._close_after = True
            return
        self._route = route
        streams = self.listener.streams is not None and self.listener.streams(route)
        limit = route.config.stream_limit if streams else route.config.body_limit
        if self._length is not None and limit is not None and self._length > limit:
            self._refuse(wire.TOO_LARGE, f"the request body is {self._length} bytes, over the limit of {limit}")
            return
        if self._expect and self._task is None and not self._queue and self.transport is not None:
            self.transport.write(_CONTINUE)
        if streams:  # answered once this read is parsed: whole if the body came with the head, else streamed
            self._streams = True
            self._stream_limit = limit

    def on_body(self, body: bytes) -> None:
        if self._stopped:
            return
        exchange = self._exchange
        if exchange is not None:
            if not exchange.feed(body):
                self._stop_reading()
                self._unread = True
                self._exchange = None
            return
        self._size += len(body)
        if self._reject is not None:
            if self._size > MAX_DISCARD:
                self._close_after = True
            return
        assert self._route is not None
        limit = self._stream_limit if self._streams else self._route.config.body_limit
        if limit is not None and self._size > limit:
            self._refuse(wire.TOO_LARGE, f"the request body exceeds the limit of {limit} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._stopped:
            return
        self._parsing = False
        exchange = self._exchange
        if exchange is not None:  # answered already
            self._exchange = None
            exchange.end()
            if self._close_after:
                self._stop_reading()
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = self._request(body)
        if self._streams:  # whole, but its response may still stream
            request.exchange = HttpExchange(self, request.method, request.http10, request.keep_alive,
                                            self._stream_limit, whole=body)
        self._enqueue(request)
        if self._close_after:
            self._stop_reading()

    def _begin_stream(self) -> None:
        """A streamed route's request whose body is still to come: answered now, its body (what came
        so far, and the rest as it arrives) fed to its exchange."""
        request = self._request(b"")
        exchange = HttpExchange(self, request.method, request.http10, request.keep_alive, self._stream_limit)
        request.exchange = self._exchange = exchange
        for piece in self._body:
            exchange.feed(piece)
        self._body = []
        self._enqueue(request)

    def _request(self, body: bytes) -> Request:
        parser = self.parser
        method = _METHODS.get(raw := parser.get_method())
        if method is None:
            method = raw.decode("ascii")
            if len(_METHODS) < 64:
                _METHODS[raw] = method
        try:
            target, _ = wire.origin_form(self._url)
        except (ValueError, UnicodeError):  # refused in on_headers_complete already
            target = "/"
        keep_alive = parser.should_keep_alive() and not self._close_after
        return Request(method, target, self._headers, body, keep_alive, parser.get_http_version() == "1.0",
                       self._route, self._reject, self._trace)

    # --- answering --------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (after anything queued before it), read nothing more, close."""
        self._parsing = False
        self._unread = True
        self._enqueue(Request("GET", "/", [], b"", False, False, None, (status, message), None))
        self._stop_reading()

    def _stop_reading(self) -> None:
        self._stopped = True
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _enqueue(self, request: Request) -> None:
        if self._task is None:
            self._due = None
            self._task = self.loop.create_task(self._serve(request))
            return
        self._queue.append(request)
        if len(self._queue) >= MAX_PIPELINE and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    async def _serve(self, request: Request) -> None:
        try:
            await self._answer_in_order(request)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: never leave the client hanging on a connection nobody serves
            log.exception("connection on %s failed", self.listener.text)
            if self.transport is not None:
                self.transport.abort()

    async def _answer_in_order(self, request: Request) -> None:
        listener = self.listener
        while True:
            head, body, keep_alive = await listener.answer(request, self)
            self.streaming = None
            transport = self.transport
            if transport is None:
                return
            if request.exchange is not None and not request.exchange.complete:
                self._unread = True  # the client may still be sending the body nobody reads
            if not head:  # a streamed response: written already
                pass
            elif len(body) <= _SMALL:
                transport.write(head + body if body else head)
            else:
                transport.write(head)
                transport.write(body)
            if not keep_alive:
                self._stopped = True
                if self._unread:
                    self._linger(transport)
                else:
                    transport.close()
                return
            if self._write_ready is not None and not self._write_ready.done():
                await self._write_ready
                if self.transport is None:
                    return
            if self._queue:
                request = self._queue.popleft()
                if (self._reading_paused and not self._stopped and not self._body_paused
                        and len(self._queue) < MAX_PIPELINE // 2):
                    self._reading_paused = False
                    transport.resume_reading()
                continue
            self._task = None
            if self.draining:
                transport.close()
            elif self._parsing:
                self._arm(listener.read_timeout_s, self._read_expired)
            else:
                self._arm(listener.idle_timeout_s, self._idle_expired)
            return

    # --- timers and closing ---------------------------------------------------------------

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after a refusal without losing the answer: a socket closed with unread data
        sends RST, and the client may discard the answer it has not read yet. So: send FIN,
        keep reading (and dropping) what the client still sends, close after ``LINGER_S``
        or when it closes (nginx's "lingering close")."""
        if transport.can_write_eof():
            transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm(LINGER_S, transport.close)

    def _arm(self, delay: float, callback: Any) -> None:
        """Call ``callback`` in ``delay`` seconds, in place of what was armed. The loop's timer is
        kept while it is not due later than this: most requests arm and disarm (``_due = None``)
        a deadline or two and make no timer; one that fires early arms itself again."""
        due = self.loop.time() + delay
        self._due, self._on_due = due, callback
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        if due is None:
            return
        if self.loop.time() + _RESOLUTION < due:  # armed again since: not due yet
            self._timer = self.loop.call_at(due, self._fire)
            return
        self._due = None
        self._on_due()

    def _idle_expired(self) -> None:
        if self.transport is not None and self._task is None and not self._parsing:
            self.transport.close()

    def _read_expired(self) -> None:
        if self.transport is not None and self._task is None and self._parsing:
            self._refuse(wire.READ_TIMEOUT, "the request did not arrive in time")

    def closing(self) -> bool:
        """Whether the answer being written is this connection's last (asked when it is ready)."""
        return self.draining or (self._stopped and not self._queue)

    def drain(self) -> None:
        """The listener is closing: close now if idle, else after the answers in progress."""
        self.draining = True
        if self.transport is not None and self._task is None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _host_text(host: bytes | None) -> str:
    return host.decode("latin-1")[:200] if host else ""
