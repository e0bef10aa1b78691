"""HTTP connections handed to this worker by the host's ``builtin:http-server`` (``trellis/samehost/handoff.py``).

The provider accepts a connection on a listener whose components this worker
serves and passes the socket here; the worker reads its requests with the
provider's own HTTP code (``providers/builtin/http_server``: parsing, limits,
timeouts, keep-alive, errors) and answers each by calling the component in
process, on the event loop when it can (``inline.py``), without NATS. What the
client sees is what the provider would have answered:

* **Admission.** A request takes one of the component's slots on this worker
  (:class:`~.colocated.Slots`, shared with its RPC server). With none free, or
  with the component no longer served here, the request goes over NATS, as the
  provider would have sent it, to any instance on the lattice.
* **Limits.** A request body the lattice could not carry (over NATS's
  ``max_payload``) goes the NATS way, to fail there as it always did; a
  response past the envelope's frame limit fails as an RPC reply would (a
  smaller one crosses NATS in parts, so it is answered here too).
* **Streams.** A ``wasi:http`` component's requests are served as streams
  (``trellis/httpfront/streaming.py``, :meth:`HandoffServer.streams`): the call
  starts at the request's head, with the connection's exchange set for it
  (``wasi_http.EXCHANGE``); while the body is still arriving it runs on a Wasm
  thread and waits for a slot here (it cannot go over NATS half-read), unless
  the component is no longer served here: then the body is read whole first.
* **Errors** map to the same statuses and texts (``gateway._failure``).
* **Tracing.** The request's server span (``HTTP POST``) and the component's
  (``serve …``) are made as on the two ends of the remote path, when something
  records spans; otherwise the caller's ``traceparent`` is passed on.

The provider stays in charge: a listener's route changes reach its connections
here; when it closes, or the provider goes away, they close once their answers
are written. Stats, per component: ``handoff: {served, failed, remote}`` (answered here;
failed here; sent over NATS for want of a slot or for size).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from trellis.host.runtime.wasi_http import EXCHANGE
from trellis.httpfront import wire
from trellis.httpfront.config import ServerConfig
from trellis.httpfront.gateway import FUNCTION, INTERFACE, CallFailed, NatsCaller, call_failure
from trellis.httpfront.listener import Listener
from trellis.httpfront.protocol import HttpConnection
from trellis.httpfront.relay import STREAMING_WAIT_S
from trellis.httpfront.routes import Route, RouteTable
from trellis.httpfront.streaming import HttpExchange
from trellis.interfaces.envelope import ENVELOPE_ROOM, MAX_BODY, Invocation
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.serving import serve
from trellis.samehost import handoff

from . import dispatch
from .records import VIA_HANDOFF

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("trellis.worker.handoff")
_SPAN_ATTRIBUTES = {"trellis.handoff": True}


class LocalCaller:
    """The HTTP front's caller inside a worker: in process when it can, else over NATS."""

    def __init__(self, worker: Worker, source: str) -> None:
        self.worker = worker
        self.source = source
        self.remote = NatsCaller(worker.nc, worker.lattice, source)
        self.new_id = self.remote.new_id

    async def start(self) -> None:
        await self.remote.start()

    async def close(self) -> None:
        await self.remote.close()

    async def call(self, target: str, link_name: str, request: dict[str, Any], *, timeout_s: float,
                   instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None = None,
                   invocation_id: str | None = None, exchange: HttpExchange | None = None) -> Any:
        """Answer ``request``; with an ``exchange`` (a wasi:http component's route: ``streams``), its
        body is read as it arrives and its response streamed (trellis/httpfront/streaming.py)."""
        gate = self.worker.http_gate  # TRELLIS_HTTP_ACTIVE_MAX: wait in line before taking an instance
        if gate is None:
            return await self._call(target, link_name, request, timeout_s=timeout_s, instance_wait_s=instance_wait_s,
                                    retry_lost=retry_lost, trace=trace, invocation_id=invocation_id,
                                    exchange=exchange)
        started = time.monotonic()
        try:
            await asyncio.wait_for(gate.acquire(), timeout_s)
            timeout_s = max(0.001, timeout_s - (time.monotonic() - started))  # the wait is part of its time
        except TimeoutError:
            raise CallFailed(wire.UNAVAILABLE, f"worker {self.worker.index} answered {timeout_s * 1000:.0f} ms of "
                                               f"other requests before this one's turn came") from None
        try:
            return await self._call(target, link_name, request, timeout_s=timeout_s, instance_wait_s=instance_wait_s,
                                    retry_lost=retry_lost, trace=trace, invocation_id=invocation_id,
                                    exchange=exchange)
        finally:
            gate.release()

    async def _call(self, target: str, link_name: str, request: dict[str, Any], *, timeout_s: float,
                    instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None,
                    invocation_id: str | None, exchange: HttpExchange | None) -> Any:
        served = self.worker.served.get(target)
        streamed = exchange is not None and exchange.arriving  # the body is still arriving
        max_body = self.remote.max_payload - ENVELOPE_ROOM
        if streamed and (served is None or not served.taking_calls):  # elsewhere: over NATS, streamed
            if served is not None:
                served.handoff["remote"] += 1
            return await self.remote.call(target, link_name, request, timeout_s=timeout_s,
                                          instance_wait_s=instance_wait_s, retry_lost=retry_lost, trace=trace,
                                          invocation_id=invocation_id, exchange=exchange)
        body = request.get("body") or b""
        decision = dispatch.handoff(served is not None, served is not None and served.taking_calls, len(body),
                                    max_body)
        slots = served.slots if served is not None else None
        if streamed:  # a slot here, waiting for one if need be: the body cannot go elsewhere now
            assert slots is not None
            if not slots.try_acquire():
                try:
                    await asyncio.wait_for(slots.acquire(), max(instance_wait_s, 0.001))
                except TimeoutError:
                    raise CallFailed(wire.UNAVAILABLE, f"every instance of component {target!r} is busy") from None
        elif decision.way is dispatch.REMOTE or slots is None or not slots.try_acquire():
            if served is not None:
                served.handoff["remote"] += 1
            return await self.remote.call(target, link_name, request, timeout_s=timeout_s,
                                          instance_wait_s=instance_wait_s, retry_lost=retry_lost, trace=trace,
                                          invocation_id=invocation_id, exchange=exchange)
        assert served is not None and slots is not None
        # a streamed exchange's deadline is an idle budget (``timeout_s`` to the invoker, restarted as its
        # bodies move): the invocation's own, which its nested calls inherit, must outlast a long transfer
        whole_s = max(timeout_s, STREAMING_WAIT_S) if exchange is not None else timeout_s
        inv = Invocation(target=target, interface=INTERFACE, function=FUNCTION, args=[request], source=self.source,
                         id=invocation_id or self.new_id(), deadline_ms=int((time.time() + whole_s) * 1000),
                         link=link_name, trace=trace or {})
        token = EXCHANGE.set(exchange) if exchange is not None else None
        try:  # as the RPC server serves it: its span (or the request's trace context), its errors, its counts
            result = await serve(inv, self.worker.calls.invoke, served, inv, timeout_s, VIA_HANDOFF, streamed,
                                 counts=served.handoff,
                                 attributes=_SPAN_ATTRIBUTES)
        except RpcError as exc:
            if exc.code == ErrorCode.TIMEOUT and inv.remaining_s() <= 0:  # the request's deadline
                raise CallFailed(wire.TIMED_OUT, f"component {target!r} did not answer within "
                                                 f"{timeout_s * 1000:.0f} ms") from None
            raise call_failure(target, exc.code, exc.kind, exc.message, inv.id) from None
        finally:
            slots.release()
            if token is not None:
                EXCHANGE.reset(token)
        if isinstance(result, dict) and len(result.get("body") or b"") > MAX_BODY:
            raise CallFailed(wire.FAILED, f"component {target!r} failed (too_large); invocation {inv.id}")
        return result


    @staticmethod
    async def _collect(exchange: HttpExchange, most: int) -> bytes:
        """A streamed body, whole (for a call over NATS); 413 past ``most`` bytes."""
        try:
            data = await exchange.collect(most)
        except ValueError as exc:
            raise CallFailed(wire.TOO_LARGE, str(exc)) from None
        return data


class _Provider:
    """One http-server provider of this host, connected: its listeners and their connections here."""

    def __init__(self, door: HandoffServer, sock: socket.socket) -> None:
        self.door = door
        self.listeners: dict[int, Listener] = {}
        self.caller: LocalCaller | None = None
        self.channel = handoff.Channel(sock, self._on_message, self._on_close)

    def _on_message(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "conn":
            listener = self.listeners.get(msg.get("listener"))  # type: ignore[arg-type]  # strings, by the channel's protocol
            if listener is None or len(fds) != 1 or self.door.closing:
                handoff.close_fds(fds)
                log.warning("a handed connection for unknown listener %s was dropped", msg.get("listener"))
                return
            self.door.adopt(listener, fds[0])
            return
        handoff.close_fds(fds)
        if op == "listener":
            self._listener(msg)
        elif op == "close":
            gone = self.listeners.pop(msg.get("id"), None)  # type: ignore[arg-type]  # strings, by the channel's protocol
            if gone is not None:
                _drain(gone)

    def _listener(self, msg: dict[str, Any]) -> None:
        if self.caller is None:
            self.caller = LocalCaller(self.door.worker, str(msg["source"]))
            self.door.worker.spawn(self.caller.start(), "handoff-caller")
        table = RouteTable(Route.from_wire(r) for r in msg["routes"])
        listener = self.listeners.get(msg["id"])
        if listener is not None:
            listener.table = table  # requests in progress keep the route they matched
            return
        listener = self.listeners[msg["id"]] = Listener(tuple(msg["address"]), table, self.caller,
                                                        ServerConfig(**msg["settings"]))
        if self.door.worker.tuning.calls.http_streams:
            listener.streams = self.door.streams

    def _on_close(self) -> None:
        """The provider went away (or closed the channel): its connections close once answered."""
        for listener in self.listeners.values():
            _drain(listener)
        self.door.worker.spawn(self._finish(), "handoff-provider-gone")

    async def _finish(self) -> None:
        # requests in progress may still go over NATS: the caller closes once they are answered
        while any(lst.connections for lst in self.listeners.values()):
            await asyncio.sleep(0.1)
        self.door.providers.discard(self)
        self.listeners.clear()
        if self.caller is not None:
            await self.caller.close()

    def serving(self, components: list[str]) -> None:
        self.channel.send({"op": "serving", "components": components})


def _drain(listener: Listener) -> None:
    for conn in list(listener.connections):
        conn.drain()


class HandoffServer:
    """This worker's end of connection handoff: providers of its host connect and hand connections."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.address = handoff.worker_address(worker.lattice, worker.host_id, worker.index)
        self.providers: set[_Provider] = set()
        self.closing = False
        self._sock: socket.socket | None = None
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        try:
            self._sock = handoff.listen(self.address)
        except OSError as exc:
            log.warning("connection handoff is off for this worker: cannot listen on %r: %s",
                        self.address[1:], exc)
            return
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("handoff accept failed: %r", exc)
                return
            if not handoff.same_user(sock):
                sock.close()
                continue
            sock.setblocking(False)
            provider = _Provider(self, sock)
            self.providers.add(provider)
            provider.serving(self.serving())

    def streams(self, route: Route) -> bool:
        """Whether ``route``'s requests are served as streams here: its component is a wasi:http
        one this worker takes calls for (trellis/httpfront/streaming.py)."""
        served = self.worker.served.get(route.target)
        return served is not None and served.taking_calls and served.invoker.serves_wasi_http

    def serving(self) -> list[str]:
        if self.closing:
            return []
        return self.worker.served.taking_calls()

    def changed(self) -> None:
        """The components served here changed: every provider learns which it may hand over."""
        components = self.serving()
        for provider in list(self.providers):
            provider.serving(components)

    def adopt(self, listener: Listener, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
        except OSError:
            handoff.close_fds([fd])
            return
        self.worker.spawn(self._adopt(listener, sock), "handoff-adopt")

    async def _adopt(self, listener: Listener, sock: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: HttpConnection(listener), sock)
        except OSError as exc:
            log.debug("a handed connection could not be served: %r", exc)
            sock.close()

    def connections(self) -> list[HttpConnection]:
        return [conn for p in self.providers for lst in p.listeners.values() for conn in lst.connections]

    async def close(self, grace_s: float) -> None:
        """Stop taking connections; those handed here close once their answers are written."""
        self.closing = True
        self.changed()  # providers stop handing connections here
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for provider in list(self.providers):
            for listener in provider.listeners.values():
                _drain(listener)
        deadline = time.monotonic() + grace_s
        while self.connections() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in self.connections():
            conn.abort()
        for provider in list(self.providers):
            provider.channel.close()
