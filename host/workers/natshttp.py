"""An HTTP request to a ``wasi:http`` component that came over NATS, served as streams.

The HTTP front (``trellis/httpfront/gateway.py``) starts the call at the request's head; its
record may carry two byte-stream offers (``interfaces/bytestream.py``):

* ``"body-stream"`` (the front's sender): the request body, as the client sends it. The guest's
  ``incoming-body`` reads it as it comes (``record["body"]`` is then empty).
* ``"response-stream"`` (the front's receiver): where a streamed response body goes.

The response is held back until it is worth streaming (:class:`HeldSink`): a handler that
finishes within :data:`HOLD_S` with at most :data:`HOLD_BYTES` of body is answered in the call's
one reply, as before. Past either, the head (and what was written so far) goes now as the call's
reply (``EARLY_REPLY``, marked ``"stream": true``) and every later write goes to the front on the
stream as the guest writes it. A failure after that aborts the stream: the front closes the
client's connection (the client sees a cut body, never a complete one).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from trellis.host.runtime.wasi_http import EXCHANGE
from trellis.host.runtime.wasi_http.outgoing import call_deadline
from trellis.interfaces.bytestream import read_offer
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.rpc_server import EARLY_REPLY, EarlyReply
from trellis.kit.bodies import BodyError, BodySource, BytesSource
from trellis.kit.natsbodies import ReceiverSource, SenderSink
from trellis.kit.natsstream import Receiver, StreamHub

if TYPE_CHECKING:
    from .calls import Calls
    from .registry import Served

__all__ = ["HOLD_BYTES", "HOLD_S", "HeldSink", "NatsExchange", "serve", "streams_in"]

#: a response body is held (to go whole in the reply) up to this many bytes...
HOLD_BYTES = 64 * 1024
#: ...and this long after its head was set
HOLD_S = 0.02


def streams_in(inv: Invocation) -> bool:
    """Whether this HTTP call's record carries stream offers (the front streams it)."""
    args = inv.args
    return bool(args) and isinstance(args[0], dict) and ("response-stream" in args[0] or "body-stream" in args[0])


class HeldSink:
    """A streamed response's body, held until it is worth streaming (see the module doc)."""

    def __init__(self, exchange: NatsExchange, status: int, headers: list[tuple[str, bytes]]) -> None:
        self.exchange = exchange
        self.status = status
        self.headers = headers
        self.chunks: list[bytes] = []
        self.size = 0
        self.target: SenderSink | None = None
        self.finished = False
        self.aborted: str | None = None
        self.lock = threading.Lock()

    def go(self) -> None:
        """Stream from now on (any thread): the head and what was held go as the call's reply."""
        ex = self.exchange
        with self.lock:
            if self.target is not None or self.finished or self.aborted is not None or ex.offer is None:
                return
            if ex.early is None:
                return
            tx = ex.hub.sender()
            tx.attach(ex.offer)
            self.target = SenderSink(tx, call_deadline)
            body, self.chunks = b"".join(self.chunks), []
            ex.early.send({"status": self.status, "headers": [[k, v] for k, v in self.headers], "body": body,
                           "stream": True})

    @property
    def streaming(self) -> bool:
        return self.target is not None

    def capacity(self) -> int:
        target = self.target
        if target is not None:
            return target.capacity()
        if self.finished:
            raise BodyError("the response body is finished")
        return max(HOLD_BYTES - self.size, 4096)

    def write(self, data: bytes) -> None:
        target = self.target
        if target is None:
            with self.lock:
                target = self.target
                if target is None:
                    if self.finished:
                        raise BodyError("the response body is finished")
                    self.chunks.append(data)
                    self.size += len(data)
                    over = self.size > HOLD_BYTES
            if target is None:
                if over:
                    self.go()
                return
        target.write(data)

    def flushed(self) -> bool:
        return self.target.flushed() if self.target is not None else True

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        return self.target.wait(timeout, flushed) if self.target is not None else True

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            target = self.target
        if target is not None:
            target.finish()

    def abort(self, reason: str) -> None:
        with self.lock:
            self.aborted = reason
            target = self.target
        if target is not None:
            target.abort(reason)

    def whole(self) -> bytes:
        return b"".join(self.chunks)


class NatsExchange:
    """A :class:`trellis.kit.bodies.Exchange` for a request that came over NATS with stream offers."""

    def __init__(self, hub: StreamHub, record: dict[str, Any], early: EarlyReply | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.early = early
        self.loop = loop
        offer = record.get("response-stream")
        self.offer = offer if isinstance(read_offer(offer), tuple) else None
        self.rx: Receiver | None = None
        source = read_offer(record.get("body-stream"))
        if isinstance(source, str):
            self.rx = hub.receiver()
            self.rx.accept(source)  # this instance takes the body: the front starts sending
            self.body: BodySource = ReceiverSource(self.rx, bytes(record.get("body") or b""))
        else:
            self.body = BytesSource(record.get("body") or b"")
        self.sink: HeldSink | None = None
        self._claimed = False

    def claim(self) -> bool:
        if self._claimed:
            return False
        self._claimed = True
        return True

    def start(self, status: int, headers: list[tuple[str, bytes]]) -> HeldSink:
        """(On the Wasm thread.) The head is set: held for :data:`HOLD_S`, then streamed if the call
        is still running."""
        sink = self.sink = HeldSink(self, status, headers)
        self.loop.call_soon_threadsafe(self.loop.call_later, HOLD_S, sink.go)
        return sink

    @property
    def started(self) -> bool:
        return self.sink is not None and self.sink.streaming

    def close(self) -> None:
        if self.rx is not None:
            self.rx.close()  # a body the guest did not read to its end: the front stops sending


def _error(text: str) -> dict[str, Any]:
    return {"status": 500, "headers": [["content-type", b"text/plain; charset=utf-8"]],
            "body": (text + "\n").encode()}


async def serve(calls: Calls, hub: StreamHub, served: Served, inv: Invocation) -> Any:
    """One streamed HTTP call of a wasi:http component (see the module doc); its reply when it was
    not sent early."""
    exchange = NatsExchange(hub, inv.args[0], EARLY_REPLY.get(), asyncio.get_running_loop())
    token = EXCHANGE.set(exchange)
    try:
        # a body still arriving needs a Wasm thread; a whole one may run inline (its response is then
        # buffered: an inline call may run again, so it claims no exchange)
        result = await calls.invoke(served, inv, thread=exchange.rx is not None)
    finally:
        EXCHANGE.reset(token)
        exchange.close()
    sink = exchange.sink
    if sink is None or sink.streaming:
        return result  # not streamed (the usual record), or sent already (dropped)
    if sink.aborted is not None:
        return _error("the component failed")
    if isinstance(result, dict):
        result["body"] = sink.whole()
    return result
