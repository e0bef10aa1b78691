"""Serving invocations for one target (a component on a host, or a provider).

Subscribes in the target's queue group, decodes each envelope, admits it under
a concurrency cap with a bounded wait queue (past it: a ``busy`` error the
caller retries elsewhere), sends progress frames while a call runs long, and
replies exactly once. Malformed frames get an error reply (or are dropped when
they carry no reply subject); nothing a caller sends can take the server down.

Per call it does little beyond decode, handler and encode: a free slot is
taken without a timer (``wait_for`` only for a call that must queue); one timer
per server, not per call, sends the progress frames of every call that has
been here a while. Each call is served through ``serving.serve`` (its span or trace
context, the mapping of what the handler raised to the error reply, its count), as
every other way a call enters a worker or a provider.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from . import subjects
from .call_memory import CallMemory, Key
from .envelope import MAX_FRAME, PART_HEADER, EnvelopeError, Invocation, Reply, ok_frame, progress_frame
from .errors import ErrorCode
from .rpc_client import PROGRESS_INTERVAL_S, RpcError
from .serving import serve
from .telemetry.series import FastHistogram

log = logging.getLogger(__name__)

Handler = Callable[[Invocation], Awaitable[Any]]


class CallSlots(Protocol):
    """A server's concurrency slots: ``asyncio.Semaphore`` by default; a worker passes slots
    its co-located calls share (``host/workers/slots.py``)."""

    def locked(self) -> bool: ...

    async def acquire(self) -> bool: ...

    def release(self) -> None: ...

#: room left in each NATS message of a reply sent in parts, for its headers
_PART_ROOM = 1024
#: a call gets progress frames once it has been in this server this long (then every interval)
_PROGRESS_AFTER_S = PROGRESS_INTERVAL_S / 2
#: the reply subject of a call that came over a same-host socket (``trellis/samehost/local_rpc.py``)
LOCAL_REPLY_PREFIX = "_LOCAL."


class EarlyReply:
    """Lets a handler answer its caller before it returns (the head of a streamed HTTP response,
    whose body then follows on a byte stream, ``interfaces/bytestream.py``). What the handler
    returns afterwards is dropped. :meth:`send` may be called from any thread, once."""

    __slots__ = ("server", "reply_to", "inv_id", "key", "once", "sent")

    def __init__(self, server: RpcServer, reply_to: str, inv_id: str, key: int, once: Key | None) -> None:
        self.server = server
        self.reply_to = reply_to
        self.inv_id = inv_id
        self.key = key
        self.once = once  # the call's key in the server's CallMemory
        self.sent = False

    def send(self, result: Any) -> bool:
        """Reply ``result`` now; False when a reply went already."""
        if self.sent:
            return False
        self.sent = True
        frame = self.server._encode_result(self.inv_id, result)
        loop = self.server._loop
        if loop is None or threading.get_ident() == self.server._loop_thread:
            self.server._reply_early(self, frame)
        else:
            loop.call_soon_threadsafe(self.server._reply_early, self, frame)
        return True


#: the call being served on this task (or the Wasm thread it runs on), when its caller waits for a reply
EARLY_REPLY: ContextVar[EarlyReply | None] = ContextVar("trellis_early_reply", default=None)


class _LocalMsg:
    """What :meth:`RpcServer._serve` reads of a NATS message, for a call from a local socket."""

    __slots__ = ("data", "reply", "headers")

    def __init__(self, data: bytes, reply: str) -> None:
        self.data = data
        self.reply = reply
        self.headers = None


class RpcServer:
    def __init__(
        self,
        nc: Client,
        lattice: str,
        target: str,
        handler: Handler,
        *,
        served_by: str = "",
        max_concurrent: int = 64,
        max_queue: int = 256,
        non_retryable: frozenset[str] = frozenset(),
        admission: CallSlots | None = None,
        remember: bool = True,
    ) -> None:
        self.nc = nc
        self.lattice = lattice
        self.target = target
        self.handler = handler
        self.served_by = served_by
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        #: functions (``func`` or ``ns:pkg/iface.func``) that must run at most once
        self.non_retryable = non_retryable
        #: where calls take a slot (``max_concurrent`` of them unless ``admission`` is given)
        self._slots: CallSlots = admission if admission is not None else asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._inflight: set[asyncio.Task[None]] = set()
        #: calls that want progress frames: id(inv) -> (reply subject, invocation id, arrived at)
        self._live: dict[int, tuple[str, str, float]] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the connection's, from start()
        self._loop_thread = 0
        self._chores: set[asyncio.Task[None]] = set()  # progress sends under way
        self._sub: Any = None
        self.stats = {"served": 0, "failed": 0, "busy": 0, "malformed": 0, "queued": 0}
        #: how long calls that found no free slot waited for one (only those: a free slot costs nothing)
        self.queue_wait = FastHistogram()
        #: sends frames to calls that came over a local socket (``trellis/samehost/local_rpc.py``)
        self.local_send: Callable[[str, bytes], None] | None = None
        #: at most once per call id: a copy of a call (a caller's retry) joins the running one or
        #: gets the finished one's reply (``call_memory.py``); None with ``remember=False``
        self.memory: CallMemory | None = CallMemory() if remember else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._sub = await self.nc.subscribe(
            subjects.rpc(self.lattice, self.target), queue=subjects.rpc_queue_group(self.target),
            cb=self._on_msg, pending_msgs_limit=65536,
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def waiting(self) -> int:
        """Calls queued for a slot now."""
        return self._waiting

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop taking calls, let those in flight finish (up to the timeout), cancel the rest."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
        if self._inflight:
            done, pending = await asyncio.wait(set(self._inflight), timeout=drain_timeout_s)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _on_msg(self, msg: Msg) -> None:
        self._spawn(msg)

    def take_local(self, frame: bytes, reply_to: str) -> bool:
        """A call that came over a local socket: served as one from NATS, answered through
        :attr:`local_send` (its ``reply_to`` starts with :data:`LOCAL_REPLY_PREFIX`).
        False when this server has stopped taking calls."""
        if self._sub is None:
            return False
        self._spawn(_LocalMsg(frame, reply_to))
        return True

    def _spawn(self, msg: Msg | _LocalMsg) -> None:
        task = (self._loop or asyncio.get_running_loop()).create_task(self._serve(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _publish(self, subject: str, frame: bytes) -> None:
        """``frame`` to a caller: over its local socket, or NATS (in parts past its max payload)."""
        if self.local_send is not None and subject.startswith(LOCAL_REPLY_PREFIX):
            self.local_send(subject, frame)
            return
        limit = self.nc.max_payload
        if limit and len(frame) > limit:
            await self._publish_parts(subject, frame, limit)
        else:
            await self.nc.publish(subject, frame)

    async def _serve(self, msg: Msg | _LocalMsg) -> None:
        try:
            inv = Invocation.decode(msg.data)
        except EnvelopeError as exc:
            self.stats["malformed"] += 1
            if msg.reply:
                await self._respond(msg, Reply.failure("", ErrorCode.BAD_REQUEST, f"malformed invocation: {exc}"))
            return
        remaining = inv.remaining_s()
        if remaining <= 0:
            late = Reply.failure(inv.id, ErrorCode.TIMEOUT, "deadline passed before the call started", "timeout")
            await self._respond(msg, late)
            return
        slots = self._slots
        queued = slots.locked()
        if queued and self._waiting >= self.max_queue:
            self.stats["busy"] += 1
            await self._respond(msg, Reply.failure(
                inv.id, ErrorCode.BUSY,
                f"{self.target} is busy on {self.served_by or 'this host'}: {self.max_concurrent} running, "
                f"{self._waiting} waiting"))
            return
        key = id(inv)
        reply_to = msg.reply
        early: EarlyReply | None = None
        once: Key | None = None
        if reply_to:  # progress frames while it waits and runs (one timer for the whole server)
            memory = self.memory
            if memory is not None:
                once = (inv.id, inv.function)
                seen = memory.begin(once, inv.deadline_ms / 1000)
                if seen is not None:  # a copy of a call here already (a retry): never run twice
                    await self._again(reply_to, inv, key, seen)
                    return
            self._watch(key, reply_to, inv.id)
            early = EarlyReply(self, reply_to, inv.id, key, once)
            EARLY_REPLY.set(early)  # this task's own context: the handler (and its Wasm thread) see it
        try:
            if queued:
                self._waiting += 1
                self.stats["queued"] += 1
                began = (self._loop or asyncio.get_running_loop()).time()
                try:
                    await asyncio.wait_for(slots.acquire(), max(remaining, 0.001))
                except TimeoutError:
                    late = Reply.failure(inv.id, ErrorCode.TIMEOUT, f"{self.target}: deadline passed while queued",
                                         "timeout")
                    if reply_to:
                        await self._send(reply_to, inv.id, late, once)
                    return
                finally:
                    self._waiting -= 1
                    self.queue_wait.record((self._loop or asyncio.get_running_loop()).time() - began)
            else:
                await slots.acquire()  # a slot is free: returns at once, no timer
            try:
                if self.non_retryable and reply_to and (
                        inv.function in self.non_retryable or inv.operation in self.non_retryable):
                    # tell the caller the call has started: if it is lost now, it is not sent again
                    await self._publish(reply_to, progress_frame(inv.id, self.served_by, no_retry=True))
                try:  # span or trace context, error mapping, counts: as every way a call is served
                    result = await serve(inv, self.handler, inv, counts=self.stats)
                except RpcError as exc:
                    frame: bytes | Reply = Reply.failure(inv.id, exc.code, exc.message, exc.kind)
                else:
                    frame = self._encode(inv, result)
            finally:
                slots.release()
            if early is not None and early.sent:
                return  # answered while it ran (EarlyReply): what it returned is not the caller's any more
            if reply_to:
                self._live.pop(key, None)
                await self._send(reply_to, inv.id, frame, once)
        finally:
            self._live.pop(key, None)
            if once is not None and self.memory is not None and not (early is not None and early.sent):
                self.memory.abandon(once)  # no-op once answered; else copies that joined are let go

    def _watch(self, key: int, reply_to: str, inv_id: str) -> None:
        """Progress frames to ``reply_to`` while the call ``key`` is here (one timer per server)."""
        loop = self._loop or asyncio.get_running_loop()
        self._live[key] = (reply_to, inv_id, loop.time())
        if self._ticker is None:
            self._ticker = loop.call_later(PROGRESS_INTERVAL_S, self._tick)

    async def _again(self, reply_to: str, inv: Invocation, key: int,
                     seen: bytes | asyncio.Future[bytes | None]) -> None:
        """A copy of a call that ran or runs here: its reply frame (the first's), never a second run."""
        # its caller gave the first attempt up as lost: this instance sent nothing for its silence window
        log.warning("%s: a copy of call %s (%s, attempt %d) came while the call %s here (this instance was too "
                    "slow to answer its caller): answered with the call's reply, not run again", self.target, inv.id,
                    inv.function, inv.attempt, "ran" if isinstance(seen, bytes) else "runs")
        if isinstance(seen, bytes):
            frame: bytes | None = seen
        else:
            self._watch(key, reply_to, inv.id)  # the copy's caller hears progress as the first's does
            try:
                frame = await seen
            finally:
                self._live.pop(key, None)
        if frame is not None:
            try:
                await self._publish(reply_to, frame)
            except Exception as exc:
                log.debug("reply for %s lost: %r", inv.id, exc)

    def _encode(self, inv: Invocation, result: Any) -> bytes | Reply:
        """The encoded success reply, or a failure :class:`Reply` when the result cannot be encoded."""
        return self._encode_result(inv.id, result)

    def _encode_result(self, inv_id: str, result: Any) -> bytes | Reply:
        try:
            return ok_frame(inv_id, result, self.served_by)
        except EnvelopeError as exc:
            return Reply.failure(inv_id, ErrorCode.INTERNAL, f"result cannot be encoded: {exc}")

    def _reply_early(self, early: EarlyReply, frame: bytes | Reply) -> None:
        """On the loop: an :class:`EarlyReply`'s frame goes now; no more progress frames for it."""
        self._live.pop(early.key, None)
        loop = self._loop or asyncio.get_running_loop()
        final = self._final(early.inv_id, frame)
        if early.once is not None and self.memory is not None:
            self.memory.end(early.once, final)  # now: the call's task may end before the send
        task = loop.create_task(self._send(early.reply_to, early.inv_id, final))
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _respond(self, msg: Msg | _LocalMsg, reply: Reply) -> None:
        if msg.reply:
            await self._send(msg.reply, reply.id, reply)

    async def _send(self, subject: str, inv_id: str, reply: bytes | Reply, once: Key | None = None) -> None:
        """Reply exactly once: the frame, or an error that says why it could not be sent; the
        frame is the call's answer to its copies too (``once``: its key in :attr:`memory`)."""
        frame = self._final(inv_id, reply)
        if once is not None and self.memory is not None:
            self.memory.end(once, frame)
        try:
            await self._publish(subject, frame)
        except Exception as exc:
            log.debug("reply for %s lost: %r", inv_id, exc)

    def _final(self, inv_id: str, reply: bytes | Reply) -> bytes:
        """The frame that goes: ``reply`` encoded, or an error saying why it cannot go."""
        if isinstance(reply, Reply):
            reply.served_by = self.served_by
            try:
                frame = reply.encode()
            except EnvelopeError as exc:
                frame = Reply.failure(inv_id, ErrorCode.INTERNAL, f"result cannot be encoded: {exc}").encode()
        else:
            frame = reply
        if len(frame) > MAX_FRAME:
            # the caller would refuse it (or NATS drop it) and see a lost instance: say what happened
            frame = Reply.failure(
                inv_id, ErrorCode.INVOCATION_FAILED,
                f"{self.target}: reply of {len(frame)} bytes exceeds the {MAX_FRAME}-byte frame limit",
                "too_large").encode()
        return frame

    async def _publish_parts(self, subject: str, frame: bytes, limit: int) -> None:
        """A reply larger than one NATS message, in order, in parts the caller joins."""
        size = max(limit - _PART_ROOM, 1024)
        view = memoryview(frame)
        n = -(-len(frame) // size)
        for i in range(n):
            await self.nc.publish(subject, bytes(view[i * size:(i + 1) * size]),
                                  headers={PART_HEADER: f"{i + 1}/{n}"})

    def _tick(self) -> None:
        """Every PROGRESS_INTERVAL_S while calls are here: a progress frame to each that has
        been here a while (a call that ends sooner never gets one)."""
        self._ticker = None
        if not self._live:
            return  # idle: the next call re-arms it
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_later(PROGRESS_INTERVAL_S, self._tick)
        old = loop.time() - _PROGRESS_AFTER_S
        due = [(reply, inv_id) for reply, inv_id, at in self._live.values() if at <= old]
        if due:
            task = loop.create_task(self._progress(due))
            self._chores.add(task)
            task.add_done_callback(self._chores.discard)

    async def _progress(self, due: list[tuple[str, str]]) -> None:
        for reply, inv_id in due:
            try:
                await self._publish(reply, progress_frame(inv_id, self.served_by))
            except Exception:
                return  # connection closed or draining: the caller will see silence, as it should
