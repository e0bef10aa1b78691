"""One request on a connection served as streams: its body as it arrives, its response as written.

For a route whose component reads and writes its bodies as streams (a ``wasi:http``
component served by the worker the connection was handed to: ``Listener.streams``), the
connection does not wait for the whole request: at the end of its head, it makes an
:class:`HttpExchange` (a :class:`trellis.kit.bodies.Exchange`) and the request is answered
at once, its body fed to the exchange's source as the client sends it:

* **Request body.** A :class:`~trellis.kit.bodies.PipeSource`: reading the socket pauses
  while more than :data:`HIGH` bytes wait for the component, and resumes below half of it,
  so an upload of any size passes with bounded memory. ``max_body_bytes`` bounds it only
  when the route sets it (then 413 if nothing was answered yet, else the connection
  closes); a client that goes away mid-body makes the component's reads fail.
* **Response.** When the component sets its response, :meth:`HttpExchange.start` sends
  the head (``transfer-encoding: chunked`` unless it set ``content-length``; no body for
  HEAD, 204 and 304; an HTTP/1.0 client gets a body that ends with the connection), and
  each write goes to the socket as it is written, through a
  :class:`~trellis.kit.bodies.PipeSink`: a writer waits while more than :data:`HIGH`
  bytes wait to be sent or the transport's buffer is full (``pause_writing``). A
  failure after the head closes the connection: the client sees a truncated body, never a
  complete one, never a hang.

Everything here runs on the connection's event loop but :meth:`HttpExchange.start` and the
source's reads and the sink's writes, which come from the thread running the Wasm.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from trellis.kit.bodies import BodySource, BytesSource, PipeSink, PipeSource

from . import wire

if TYPE_CHECKING:
    from .protocol import HttpConnection

#: bytes buffered each way before the other side waits (the request's reading pauses; the
#: component's writes wait)
HIGH = 1 << 20


class HttpExchange:
    """See the module doc. ``limit``: the most request body bytes taken (None: no bound);
    ``whole``: the body, when it arrived with the head (nothing is piped then)."""

    __slots__ = ("conn", "loop", "pipe", "whole", "_body", "head_only", "http10", "keep_alive", "limit", "refused",
                 "started", "sink", "framing", "length", "sent", "outcome", "_claimed", "_arrived")

    def __init__(self, conn: HttpConnection, method: str, http10: bool, keep_alive: bool,
                 limit: int | None, whole: bytes | None = None) -> None:
        self.conn = conn
        self.loop = conn.loop
        #: the body as it arrives (None: it was all here at once, ``whole``)
        self.pipe = None if whole is not None else PipeSource(conn.loop, conn.pause_body, conn.resume_body, HIGH)
        self.whole = whole
        self._body: BodySource | None = self.pipe
        self.head_only = method == "HEAD"
        self.http10 = http10
        self.keep_alive = keep_alive
        self.limit = limit
        #: the front's own answer to the request (413), when it refused the body
        self.refused: tuple[int, str] | None = None
        #: set on the Wasm thread when the head goes out
        self.started = False
        self.sink: PipeSink | None = None
        self.framing = wire.CHUNKED
        self.length = 0
        self.sent = 0
        #: "done" (the body complete), "broken" (the connection was closed under it), or None
        self.outcome: str | None = None
        self._claimed = False
        self._arrived: asyncio.Event | None = None

    # --- the connection's side (the loop) ---------------------------------------------------

    @property
    def body(self) -> BodySource:
        """Where the component reads the request body (bytes, once it is all here: :meth:`settle`)."""
        if self._body is None:
            self._body = BytesSource(self.whole or b"")
        return self._body

    @property
    def arriving(self) -> bool:
        """The component reads the body as it arrives (it was not all here when the call began)."""
        return self.pipe is not None and self._body is self.pipe

    @property
    def complete(self) -> bool:
        """The whole body was read from the connection (nothing of it is left on the socket)."""
        pipe = self.pipe
        return pipe is None or (pipe.complete and pipe.error is None)

    def feed(self, data: bytes) -> bool:
        """Body bytes; False when they pass the limit (the body is refused: the caller stops reading)."""
        pipe = self.pipe
        assert pipe is not None
        if self.limit is not None and pipe.received + len(data) > self.limit:
            message = f"the request body exceeds the limit of {self.limit} bytes"
            self.refused = (wire.TOO_LARGE, message)
            pipe.fail(message)
            self._wake()
            return False
        pipe.feed(data)
        return True

    def end(self) -> None:
        if self.pipe is not None:
            self.pipe.end()
        self._wake()

    def lost(self) -> None:
        """The connection closed."""
        if self.pipe is not None:
            self.pipe.fail("the client closed the connection before the request body was complete")
        if self.sink is not None:
            self.sink.fail("the client closed the connection")
        self._wake()

    def hold(self) -> None:
        if self.sink is not None:
            self.sink.hold()

    def release(self) -> None:
        if self.sink is not None:
            self.sink.release()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    # --- the caller's side (the loop) --------------------------------------------------------

    def settle(self) -> bytes | None:
        """The whole body, when it is all here already (a small request): the component then
        reads it from bytes (an inline call may too). None while it is still arriving."""
        pipe = self.pipe
        if pipe is None:
            return self.whole
        if not pipe.complete or pipe.error is not None:
            return None
        data = self.whole = pipe.whole()
        self._body = None
        return data

    async def collect(self, most: int) -> bytes:
        """Wait for the whole body (for a call that cannot stream it): it is buffered, paused no more.
        Raises :class:`ValueError` when it broke, or passes ``most`` bytes."""
        pipe = self.pipe
        if pipe is None:
            return self.whole or b""
        if self.limit is None or self.limit > most:
            self.limit = most
        if pipe.received > most:
            self.feed(b"")
        pipe.high = 1 << 62
        self.conn.resume_body()
        if not pipe.complete and pipe.error is None:
            self._arrived = asyncio.Event()
            await self._arrived.wait()
        if pipe.error is not None:
            raise ValueError(pipe.error)
        data = self.whole = pipe.whole()
        self._body = None
        return data

    def finished_cleanly(self) -> bool:
        """The response went out whole and the request body was all read from the socket: the
        connection may take the next request."""
        return self.outcome == "done" and self.complete

    # --- the component's side --------------------------------------------------------------

    def claim(self) -> bool:
        if self._claimed:
            return False
        self._claimed = True
        return True

    def start(self, status: int, headers: list[tuple[str, bytes]]) -> PipeSink:
        """(On the Wasm thread.) The head goes out; the body is written to the sink returned.
        Raises :class:`~.wire.InvalidResponse` for a head that cannot be sent (nothing is)."""
        head, self.framing, self.length, self.keep_alive = wire.streamed_head(
            status, headers, head_only=self.head_only, keep_alive=self.keep_alive, http10=self.http10,
            date=self.conn.listener.date)
        sink = PipeSink(self.loop, self._send, self._done, self._broken, HIGH)
        self.sink = sink
        self.started = True
        self.loop.call_soon_threadsafe(self._write_head, head, status)
        return sink

    # --- the sink's callbacks (the loop) ----------------------------------------------------

    def _write_head(self, head: bytes, status: int) -> None:
        conn, sink = self.conn, self.sink
        assert sink is not None
        transport = conn.transport
        if transport is None:
            sink.fail("the client closed the connection")
            return
        conn.listener.count(status)
        conn.streaming = self
        if conn.writes_paused():
            sink.hold()
        transport.write(head)

    def _send(self, chunks: list[bytes]) -> None:
        transport = self.conn.transport
        if transport is None:
            assert self.sink is not None
            self.sink.fail("the client closed the connection")
            return
        framing = self.framing
        if framing is wire.NO_BODY:
            return
        size = sum(map(len, chunks))
        if framing is wire.CHUNKED:
            transport.writelines([b"%x\r\n" % size, *chunks, b"\r\n"])
        elif framing is wire.LENGTH:
            room = self.length - self.sent
            if size > room:
                data = b"".join(chunks)[:room]
                transport.write(data)
                self.sent += len(data)
                assert self.sink is not None
                self.sink.fail(f"the response body passes its content-length ({self.length} bytes)")
                self._broken("the response body passed its content-length")
                return
            transport.writelines(chunks)
        else:
            transport.writelines(chunks)
        self.sent += size

    def _done(self) -> None:
        if self.outcome is not None:
            return
        transport = self.conn.transport
        if transport is None:
            self.outcome = "broken"
            return
        if self.framing is wire.LENGTH and self.sent < self.length:
            self._broken(f"the response body ended after {self.sent} of its {self.length} bytes (content-length)")
            return
        if self.framing is wire.CHUNKED:
            transport.write(b"0\r\n\r\n")
        self.outcome = "done"
        if self.framing is wire.UNTIL_CLOSE:
            self.keep_alive = False

    def _broken(self, reason: str) -> None:
        """The body cannot be completed: the connection closes under it (the client sees it cut short)."""
        if self.outcome == "broken":
            return
        self.outcome = "broken"
        self.keep_alive = False
        self.conn.abort_stream()

