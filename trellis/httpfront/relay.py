"""A streamed request (``streaming.py``) relayed to its component over NATS, bodies on byte streams.

When the connection is not handed to a worker of the component's host (another host answers,
or ``TRELLIS_HTTP_HANDOFF=0``), a ``wasi:http`` route's request is still served as streams:

* the call starts at the request's head (one RPC, as any other), its record carrying a
  receiver offer (``"response-stream"``) and, while the body is still arriving, a sender offer
  (``"body-stream"``, ``interfaces/bytestream.py``): the body goes to the instance that took the
  call as the client sends it, paced by that instance's credit (the client's socket is paused
  while it has none), so an upload of any size passes in bounded memory;
* the instance answers a quick, small response in its one reply, as before; else it replies
  early with the head (``"stream": true``) and sends the body on the stream as the guest
  writes it, and it goes to the client as it comes (chunked unless the guest set a length);
* a request whose body has started to flow is never sent to another instance (it cannot be
  read twice): if its instance dies, the client gets 502 before the head, the connection
  closed after it, within the stream's silence window (no hang);
* while the body is still arriving, the route's ``timeout_ms`` does not bound the wait for the
  head (an upload may take longer): the component's own deadline does, restarted whenever the
  body moves (an idle budget: docs/components.md, "Limits"), and a lost instance is noticed by
  its silence as any call's.

The two pumps run on threads (:data:`_PUMPS`): they wait on the connection's pipes
(``trellis.kit.bodies``) and on the streams' credit, which are thread-side waits.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from trellis.interfaces.bytestream import CHUNK, StreamError
from trellis.kit.bodies import BodyError, BodySink, PipeSource
from trellis.kit.natsstream import Receiver, Sender, StreamHub

from . import wire
from .gateway import CallFailed

if TYPE_CHECKING:
    from .gateway import NatsCaller
    from .streaming import HttpExchange

log = logging.getLogger("trellis.providers.http_server")
#: the wait for the head of a request whose body streams in (the component's idle deadline ends it sooner)
STREAMING_WAIT_S = 24 * 3600.0

#: the threads that move streamed bodies between connections and byte streams (two per request at most)
_PUMPS = ThreadPoolExecutor(64, thread_name_prefix="http-stream")
#: how long a response waits for a client that reads nothing before the connection is given up
STALLED_CLIENT_S = 60.0


def _feed(pipe: PipeSource, tx: Sender) -> None:
    """(A thread.) The request body, from the connection to the stream, as it arrives."""
    try:
        while True:
            piece = pipe.read(CHUNK)
            if piece is None:
                tx.end()
                return
            if not piece:
                pipe.wait(1.0)
                continue
            tx.write_blocking(piece)
    except BodyError as exc:  # the client went away mid-body
        tx.abort(str(exc))
    except StreamError:
        return  # the instance stopped reading it (answered, or gone): nothing more to send


def _drain(rx: Receiver, sink: BodySink, first: bytes) -> None:
    """(A thread.) The response body, from the stream to the connection, as it comes."""
    try:
        if first:
            sink.write(first)
        while True:
            piece = rx.read_blocking(CHUNK)
            if piece is None:
                sink.finish()
                sink.wait(STALLED_CLIENT_S, flushed=True)
                return
            if sink.capacity() <= 0 and not sink.wait(STALLED_CLIENT_S):
                raise BodyError("the client read nothing for a minute")
            sink.write(piece)
    except StreamError as exc:  # the instance failed or died after the head: the connection closes
        log.warning("a streamed response broke off: %s", exc)
        sink.abort(str(exc))
    except BodyError as exc:  # the client went away
        rx.close()
        sink.abort(str(exc))


async def call(caller: NatsCaller, hub: StreamHub, target: str, link_name: str, request: dict[str, Any], *,
               timeout_s: float, instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None,
               invocation_id: str | None, exchange: HttpExchange) -> Any:
    """The component's response record (a streamed one's head, its body sent already), or
    :class:`CallFailed` (see the module doc)."""
    loop = asyncio.get_running_loop()
    rx = hub.receiver()
    request["response-stream"] = rx.offer()
    tx: Sender | None = None
    feeding: asyncio.Future[None] | None = None
    pipe = exchange.pipe if exchange.arriving else None
    if pipe is not None:  # the body is still arriving: it follows on a stream
        tx = hub.sender()
        request["body-stream"] = tx.offer()
        feeding = loop.run_in_executor(_PUMPS, _feed, pipe, tx)
        retry_lost = False  # once its body flows, a request cannot be sent to another instance
        timeout_s = max(timeout_s, STREAMING_WAIT_S)
    try:
        result = await caller.call(target, link_name, request, timeout_s=timeout_s, instance_wait_s=instance_wait_s,
                                   retry_lost=retry_lost, trace=trace, invocation_id=invocation_id)
    except BaseException:
        rx.withdraw()
        if tx is not None:
            tx.abort("the call failed")
        if feeding is not None:
            await feeding
        raise
    if not (isinstance(result, dict) and result.get("stream")):
        rx.withdraw()
        if feeding is not None:  # the instance read the body to its end (or stopped reading: aborted)
            if not tx or not tx.ended:
                assert pipe is not None
                pipe.fail("the component answered without reading the whole body")
            await feeding
        return result
    rx.expect()  # from here a dead instance is noticed by silence
    try:
        headers = [(str(k), bytes(v)) for k, v in result.get("headers") or ()]
        sink = exchange.start(result["status"], headers)
    except (wire.InvalidResponse, KeyError, TypeError, ValueError) as exc:
        rx.close()
        raise CallFailed(wire.FAILED, f"component {target!r} sent an invalid response ({exc})") from None
    await loop.run_in_executor(_PUMPS, _drain, rx, sink, bytes(result.get("body") or b""))
    if feeding is not None:
        await feeding
    return {"status": result["status"], "headers": result.get("headers") or [], "body": b""}
