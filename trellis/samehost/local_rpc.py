"""RPC to a provider on the same host, over a Unix socket instead of NATS.

A call from a component to a provider travels worker → NATS → provider and back:
two trips through nats-server, and on the worker the Wasm thread hands the call
to the event loop and waits to be woken. When the provider runs on the worker's
own host, the Wasm thread can instead write the invocation to the provider's
socket and block reading its reply: no server in between, no event loop, no
thread switch. The frames are the lattice's own (``interfaces/envelope.py``),
so the provider's :class:`~trellis.interfaces.rpc_server.RpcServer` serves them exactly
as it serves NATS messages: the same admission, queue, progress frames, errors
and spans.

* **Where.** Each provider instance a host starts listens on the Linux abstract
  Unix socket :func:`provider_address` (per network namespace; peers of another
  user are refused). A worker that cannot connect there sends the call over
  NATS, and tries again after :data:`RETRY_S`.
* **Frames.** A 4-byte big-endian length, then an envelope frame: the
  ``Invocation`` one way; progress frames and the ``Reply`` the other. A Wasm
  thread makes one call at a time on its connection (one per thread and
  provider); the door serves any number at once, replies carrying their id.
* **Failover** is the lattice's call policy (``interfaces/call_policy.py``), as in
  the RPC client: where it says send again (a reply of ``busy``, a call lost that
  may run again: silence for ``silence_s`` without a progress frame, or the
  connection closed), the call goes over NATS, where another instance may take
  it; a call lost after its callee marked it at-most-once (or made with
  ``retryable=False``) fails ``lost``.
* **The other way round.** A provider's calls to a component served by a worker
  of its host go to :func:`component_address` (each worker has a door per
  component it serves, in front of its RPC server for it), from the provider's
  event loop (:class:`LocalComponentCaller`, tried by ``RpcClient`` before NATS):
  calls share a connection per worker and component, replies told apart by id.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Awaitable
from typing import Any

from trellis.interfaces.call_policy import RETURN, Act, BadReply, CallEvent, CallState, ErrorReply, RetryPolicy
from trellis.interfaces.envelope import MAX_FRAME, EnvelopeError, Invocation, Reply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import Attempt, call_error
from trellis.interfaces.rpc_server import LOCAL_REPLY_PREFIX

from . import handoff

log = logging.getLogger(__name__)

#: after a failed connect, how long calls to that target go over NATS before trying again
RETRY_S = 2.0
#: the reply subject that tells an RpcServer a call came over this socket
REPLY_PREFIX = LOCAL_REPLY_PREFIX
_LEN = struct.Struct(">I")

#: returned by :meth:`LocalRpcClient.call` when the call must go over NATS
REMOTE: Any = object()


def provider_address(lattice: str, host_id: str, provider_id: str) -> str:
    return handoff.abstract_address(lattice, host_id, f"provider/{provider_id}")


def component_address(lattice: str, host_id: str, worker: int, component_id: str) -> str:
    """Where worker ``worker`` of a host takes calls to ``component_id`` from the host's providers."""
    return handoff.abstract_address(lattice, host_id, f"worker-{worker}/component/{component_id}")


# --- the door: a server's side ------------------------------------------------------------

class _Frames(asyncio.Protocol):
    """An asyncio end of a local RPC connection: length-prefixed frames in, each to :meth:`_take`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is None or not handoff.same_user(sock):
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]  # a Unix stream transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not buf and len(data) >= 4 and len(data) == 4 + _LEN.unpack_from(data)[0]:
            self._take(data[4:])  # the common case: one whole frame, nothing left over
            return
        buf += data
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if n > MAX_FRAME:
                log.warning("local RPC: a frame of %d bytes: closing the connection", n)
                if self.transport is not None:
                    self.transport.close()
                return
            if len(buf) < 4 + n:
                return
            frame = bytes(buf[4:4 + n])
            del buf[:4 + n]
            if not self._take(frame):
                return

    def _take(self, frame: bytes) -> bool:
        """One whole frame; False when the connection is closing (the rest is not read)."""
        raise NotImplementedError

    def send(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(_LEN.pack(len(frame)) + frame)


class _Conn(_Frames):
    """The door's end of one caller's connection."""

    def __init__(self, door: LocalRpcDoor) -> None:
        super().__init__()
        self.door = door
        self.key = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None:
            self.key = self.door.register(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.key:
            self.door.unregister(self.key)

    def _take(self, frame: bytes) -> bool:
        if self.door.server.take_local(frame, REPLY_PREFIX + self.key):
            self.door.taken += 1
            return True
        # the server stopped taking calls: this one is answered busy, so its caller sends it over
        # NATS; the connection stays, for the answers of calls the server is still finishing
        try:
            inv_id = Invocation.decode(frame).id
        except EnvelopeError:
            if self.transport is not None:
                self.transport.close()
            return False
        self.send(Reply.failure(inv_id, ErrorCode.BUSY, f"{self.door.server.target} is stopping here").encode())
        return True


class LocalRpcDoor:
    """Serves ``server``'s calls from this host's other processes on an abstract socket
    (:func:`provider_address`, :func:`component_address`)."""

    def __init__(self, server: Any, address: str) -> None:
        self.server = server
        self.address = address
        self._conns: dict[str, _Conn] = {}
        self._seq = 0
        self._server: asyncio.AbstractServer | None = None
        #: calls taken through this door
        self.taken = 0

    async def start(self) -> bool:
        if not handoff.available():
            return False
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.address)
        except OSError as exc:
            sock.close()
            log.warning("calls from this host's other processes go over NATS: cannot listen on %r: %s",
                        self.address[1:], exc)
            return False
        self.server.local_send = self.send
        self._server = await asyncio.get_running_loop().create_unix_server(lambda: _Conn(self), sock=sock,
                                                                          backlog=128)
        return True

    def switch(self, server: Any) -> None:
        """Serve new calls with ``server`` (a component's new version or scale); calls the old
        server still runs are answered through this door as before."""
        self.server = server
        server.local_send = self.send

    def register(self, conn: _Conn) -> str:
        self._seq += 1
        key = f"{self._seq:x}"
        self._conns[key] = conn
        return key

    def unregister(self, key: str) -> None:
        self._conns.pop(key, None)

    def send(self, reply_to: str, frame: bytes) -> None:
        conn = self._conns.get(reply_to[len(REPLY_PREFIX):])
        if conn is not None:  # gone: the caller saw the connection close
            conn.send(frame)

    async def close(self, stopping: Awaitable[Any]) -> None:
        """Close the door around its server's stop: no new connections; meanwhile ``stopping``
        (the server draining) answers the calls under way here, and new ones on open
        connections are answered busy; then the connections close."""
        if self._server is not None:
            self._server.close()
            self._server = None
        try:
            await stopping
        finally:
            for conn in list(self._conns.values()):
                if conn.transport is not None:
                    conn.transport.close()


# --- the callers' side ------------------------------------------------------------------

def _reply_event(reply: Reply) -> CallEvent | ErrorReply:
    err = reply.error
    return CallEvent.OK if err is None else ErrorReply(err.code, err.message, err.kind)


# --- a provider's calls to the components of its host (asyncio) ---------------------------

class _CallerConn(_Frames):
    """A provider's connection to one worker's door for one component; calls share it, their
    replies told apart by invocation id."""

    def __init__(self, owner: LocalComponentCaller, key: tuple[str, int]) -> None:
        super().__init__()
        self.owner = owner
        self.key = key
        self.calls: dict[str, Attempt] = {}

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.owner.forget(self.key, self)
        for a in self.calls.values():
            if not a.fut.done():
                a.fut.set_result(CallEvent.CLOSED)
        self.calls.clear()

    def _take(self, frame: bytes) -> bool:
        try:
            reply = Reply.decode(frame)
        except EnvelopeError as exc:
            log.warning("local RPC: a bad reply from %s: %s; closing the connection", self.key[0], exc)
            if self.transport is not None:
                self.transport.close()
            return False
        a = self.calls.get(reply.id)
        if a is None or a.fut.done():
            return True  # a late frame of a call already over
        if reply.progress:
            a.heard(reply, asyncio.get_running_loop().time())
        else:
            a.fut.set_result(reply)
        return True


class LocalComponentCaller:
    """A provider's calls to components served by its host's workers: each worker that serves
    a component takes its calls on :func:`component_address` (a door in front of the worker's
    RPC server for it). The workers are tried in turn; :data:`REMOTE` (send it over NATS)
    when none serves the component, all are busy, or a call was lost before it started."""

    REMOTE = REMOTE

    def __init__(self, lattice: str, host_id: str, workers: int, silence_s: float = 1.0) -> None:
        self.lattice = lattice
        self.host_id = host_id
        self.workers = workers
        self.silence_s = silence_s
        self.policy = RetryPolicy(silence_s=silence_s)
        self._conns: dict[tuple[str, int], _CallerConn] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_CallerConn | None]] = {}
        #: (component, worker) -> monotonic time before which it is not tried (nothing listened there)
        self._absent: dict[tuple[str, int], float] = {}
        self._turn = 0
        self.stats = {"calls": 0, "remote": 0, "lost": 0}

    def forget(self, key: tuple[str, int], conn: _CallerConn) -> None:
        if self._conns.get(key) is conn:
            del self._conns[key]

    async def _conn(self, key: tuple[str, int]) -> _CallerConn | None:
        conn = self._conns.get(key)
        if conn is not None:
            return conn
        until = self._absent.get(key)
        if until is not None and time.monotonic() < until:
            return None
        pending = self._connecting.get(key)
        if pending is not None:  # another call is connecting there: share its connection
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        pending = self._connecting[key] = loop.create_future()
        conn = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # connected here: uvloop cannot connect to an abstract name itself. A Unix socket's
            # connect does not wait, but with a full backlog: then EAGAIN, and NATS
            sock.setblocking(False)
            sock.connect(component_address(self.lattice, self.host_id, key[1], key[0]))
            _, made = await loop.create_unix_connection(lambda: _CallerConn(self, key), sock=sock)
            conn = made if made.transport is not None else None  # None: another user's socket
        except OSError:
            sock.close()
        finally:
            del self._connecting[key]
            if conn is None:
                self._absent[key] = time.monotonic() + RETRY_S
            else:
                self._absent.pop(key, None)
                self._conns[key] = conn
            pending.set_result(conn)
        return conn

    async def call(self, inv: Invocation, retryable: bool = True) -> Any:
        """The call's result, :data:`REMOTE`, or an ``RpcError`` as the RPC client raises it."""
        if self.workers <= 0:
            return REMOTE
        frame = b""  # encoded once a door is found (most targets of a provider's calls have none)
        self._turn = first = (self._turn + 1) % self.workers
        for k in range(self.workers):
            conn = await self._conn((inv.target, (first + k) % self.workers))
            if conn is not None:
                if not frame:
                    try:
                        frame = inv.encode()
                    except EnvelopeError:
                        return REMOTE  # fails over NATS the same way
                result = await self._call_on(conn, inv, frame, retryable)
                if result is not REMOTE:
                    return result
        return REMOTE

    async def _call_on(self, conn: _CallerConn, inv: Invocation, frame: bytes, retryable: bool) -> Any:
        loop = asyncio.get_running_loop()
        now = loop.time()
        state = CallState(now + inv.remaining_s(), now, retryable=retryable, policy=self.policy)
        d = state.on(CallEvent.SENT, now)
        if d.act is Act.FAIL:
            raise call_error(d, inv)
        a = Attempt(loop.create_future(), state)
        conn.calls[inv.id] = a
        self.stats["calls"] += 1
        try:
            conn.send(frame)
            a.watch(loop, d.delay_s)
            outcome = await a.fut
        finally:
            conn.calls.pop(inv.id, None)
            a.stop_watching()
        if outcome.__class__ is Reply:
            d = state.on(_reply_event(outcome), loop.time())
            if d is RETURN:
                return outcome.result
        elif outcome is CallEvent.CLOSED:  # the worker may have died mid-call
            d = state.on(outcome, loop.time())
        else:  # the state's own decision: silent (lost) or the deadline
            d = outcome
            if d.lost:
                self.stats["lost"] += 1
        if d.act is Act.RETRY:  # busy, or lost and may run again: another instance, over NATS
            self.stats["remote"] += 1
            return REMOTE
        raise call_error(d, inv)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()


# --- the caller's side (blocking: a Wasm thread) -------------------------------------------

_TIMEVAL = struct.Struct("@ll")
#: a socket's receive timeout is set again only when it would end late or more than this much
#: early (a read that times out early is just read again: the call's state says for how long)
_TIMEOUT_SLACK_S = 0.02
#: a connection's buffer (one per Wasm thread and provider); a larger frame grows it while it is read
_RECV_SIZE = 64 * 1024


def _timeval(t: float) -> bytes:
    sec = int(t)
    return _TIMEVAL.pack(sec, int((t - sec) * 1_000_000))


class _Chan:
    """A Wasm thread's blocking connection to one provider's door.

    The socket stays in blocking mode and its receive timeout is the kernel's (``SO_RCVTIMEO``),
    set only when the wait it needs changes: a read is one ``recv`` into the connection's own
    buffer (a frame's length and body together, and any frame after it kept for the next read),
    not ``poll`` + ``recv`` twice plus two ``ioctl`` calls to switch the timeout, as a Python socket
    with a timeout does. What a read that timed out had of a frame is kept, never misread."""

    __slots__ = ("sock", "timeout", "send_timeout", "buf", "start", "end")

    def __init__(self, sock: socket.socket, send_timeout_s: float) -> None:
        self.sock = sock
        self.timeout = -1.0  # none set yet
        self.send_timeout = max(send_timeout_s, 0.001)
        sock.setblocking(True)  # no Python timeout (poll before each call): the kernel's, below
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.send_timeout))
        self.buf = bytearray(_RECV_SIZE)
        self.start = 0  # buf[start:end] is read and not yet taken
        self.end = 0

    def set_timeout(self, timeout_s: float) -> None:
        """Reads wait at most ``timeout_s`` (up to :data:`_TIMEOUT_SLACK_S` less)."""
        t = max(timeout_s, 0.001)  # 0 would be "forever"
        if t - _TIMEOUT_SLACK_S <= self.timeout <= t:
            return
        self.timeout = t
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(t))

    def send(self, data: bytes, timeout_s: float) -> None:
        """All of ``data``; a frame larger than the socket's buffer may wait for room up to
        ``timeout_s`` (a smaller one waits at most the silence it was connected with: a door
        that reads nothing that long is taken as lost, and the call goes over NATS)."""
        if len(data) <= _RECV_SIZE:
            self.sock.sendall(data)
            return
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(max(timeout_s, 0.001)))
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.send_timeout))

    def read_frame(self) -> bytes | None:
        """The next frame; None when the peer closed or sent a frame past :data:`MAX_FRAME`.
        Raises ``TimeoutError`` when the timeout passed first, ``OSError`` for a broken socket."""
        while True:
            have = self.end - self.start
            if have >= 4:
                (n,) = _LEN.unpack_from(self.buf, self.start)
                if n > MAX_FRAME:
                    return None
                if have >= 4 + n:
                    begin = self.start + 4
                    frame = bytes(memoryview(self.buf)[begin:begin + n])
                    self.start = begin + n
                    if self.start == self.end:
                        self.start = self.end = 0
                        if len(self.buf) > _RECV_SIZE:  # a large frame is done: back to the first size
                            self.buf = bytearray(_RECV_SIZE)
                    return frame
                if 4 + n > len(self.buf):  # a large frame: room for all of it
                    self._compact(4 + n)
            if self.end == len(self.buf):
                self._compact(len(self.buf))
            try:
                got = self.sock.recv_into(memoryview(self.buf)[self.end:])
            except BlockingIOError:  # SO_RCVTIMEO passed
                raise TimeoutError from None
            if not got:
                return None
            self.end += got

    def _compact(self, room: int) -> None:
        """Move what is unread to the front of a buffer of at least ``room`` bytes."""
        rest = bytes(memoryview(self.buf)[self.start:self.end])
        if room > len(self.buf):
            self.buf = bytearray(room)
        self.buf[:len(rest)] = rest
        self.start, self.end = 0, len(rest)


class LocalRpcClient:
    """Calls providers of this host from Wasm threads; one blocking connection per thread and target."""

    def __init__(self, lattice: str, host_id: str, silence_s: float = 1.0) -> None:
        """``silence_s``: as the RPC client's (``DEFAULT_SILENCE_S``)."""
        self.lattice = lattice
        self.host_id = host_id
        self.silence_s = silence_s
        self.policy = RetryPolicy(silence_s=silence_s)
        self._tls = threading.local()
        #: target -> monotonic time before which it is not tried (nothing listened there)
        self._absent: dict[str, float] = {}
        self.stats = {"calls": 0, "remote": 0, "lost": 0}

    def _conn(self, target: str) -> _Chan | None:
        conns: dict[str, _Chan] | None = getattr(self._tls, "conns", None)
        if conns is None:
            conns = self._tls.conns = {}
        chan = conns.get(target)
        if chan is not None:
            return chan
        until = self._absent.get(target)
        if until is not None and time.monotonic() < until:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(provider_address(self.lattice, self.host_id, target))
            if not handoff.same_user(sock):
                raise PermissionError("another user's socket")
        except OSError:
            sock.close()
            self._absent[target] = time.monotonic() + RETRY_S
            return None
        self._absent.pop(target, None)
        chan = conns[target] = _Chan(sock, self.silence_s)
        return chan

    def _drop(self, target: str) -> None:
        chan = self._tls.conns.pop(target, None)
        if chan is not None:
            chan.sock.close()

    def call(self, inv: Invocation, frame: bytes) -> Any:
        """The call's result; :data:`REMOTE` to send it over NATS instead; raises ``RpcError`` as
        the RPC client would (an error reply, at-most-once lost, deadline). The call's state
        (``call_policy``) says how long each read may wait and what a frame or a silence means."""
        chan = self._conn(inv.target)
        if chan is None:
            return REMOTE
        self.stats["calls"] += 1
        now = time.monotonic()
        state = CallState(now + inv.remaining_s(), now, policy=self.policy)
        d = state.on(CallEvent.SENT, now)
        if d.act is Act.FAIL:
            raise call_error(d, inv)
        try:
            chan.send(_LEN.pack(len(frame)) + frame, state.deadline - now)
        except OSError:  # gone, or not reading: a frame not wholly sent is never served
            self._drop(inv.target)
            self.stats["remote"] += 1
            return REMOTE
        while True:
            event: CallEvent | ErrorReply | BadReply
            reply = None
            try:
                chan.set_timeout(d.delay_s)
                data = chan.read_frame()
            except TimeoutError:
                event = CallEvent.TICK
            except OSError:
                event = CallEvent.CLOSED
            else:
                if data is None:
                    event = CallEvent.CLOSED
                else:
                    try:
                        reply = Reply.decode(data)
                    except EnvelopeError as exc:
                        event = BadReply(str(exc))
                    else:
                        # not this call's (cannot happen on a connection dropped after a failure)
                        if reply.id != inv.id:
                            event = CallEvent.TICK
                        elif reply.progress:
                            event = CallEvent.PROGRESS_NR if reply.no_retry else CallEvent.PROGRESS
                        else:
                            event = _reply_event(reply)
            d = state.on(event, time.monotonic())
            act = d.act
            if act is Act.KEEP:  # a progress frame: how long the next read may wait
                d = state.on(CallEvent.TICK, time.monotonic())
                act = d.act
            if act is Act.WAIT:
                continue
            if act is Act.RETURN:
                return reply.result  # type: ignore[union-attr]  # RETURN comes only with a reply
            if event.__class__ is not ErrorReply:  # the connection is in doubt: a late reply is never read as another's
                self._drop(inv.target)
                if event is CallEvent.CLOSED or d.lost:
                    self.stats["lost"] += 1
            if act is Act.RETRY:
                self.stats["remote"] += 1
                return REMOTE
            raise call_error(d, inv)

    def close_thread(self) -> None:
        """Close this thread's connections."""
        for target in list(getattr(self._tls, "conns", {})):
            self._drop(target)
