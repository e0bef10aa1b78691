"""Serving invocations for one target (a component on a host, or a provider).

Subscribes in the target's queue group, decodes each envelope, admits it under
a concurrency cap with a bounded wait queue (past it: a ``busy`` error the
caller retries elsewhere), sends progress frames while a call runs long, and
replies exactly once. Malformed frames get an error reply (or are dropped when
they carry no reply subject); nothing a caller sends can take the server down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from opentelemetry import trace as otel_trace

from . import subjects, tracing
from .envelope import EnvelopeError, Invocation, Reply, progress_frame
from .errors import ErrorCode, TrellisError
from .rpc_client import PROGRESS_INTERVAL_S, RpcError

log = logging.getLogger(__name__)

Handler = Callable[[Invocation], Awaitable[Any]]


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
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self.stats = {"served": 0, "failed": 0, "busy": 0, "malformed": 0}

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            subjects.rpc(self.lattice, self.target), queue=subjects.rpc_queue_group(self.target),
            cb=self._on_msg, pending_msgs_limit=65536,
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

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

    async def _on_msg(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            inv = Invocation.decode(msg.data)
        except EnvelopeError as exc:
            self.stats["malformed"] += 1
            if msg.reply:
                await self._respond(msg, Reply.failure("", ErrorCode.BAD_REQUEST, f"malformed invocation: {exc}"))
            return
        if inv.remaining_s() <= 0:
            await self._respond(msg, Reply.failure(inv.id, ErrorCode.TIMEOUT, "deadline passed before the call started", "timeout"))
            return
        if self._slots.locked() and self._waiting >= self.max_queue:
            self.stats["busy"] += 1
            await self._respond(msg, Reply.failure(
                inv.id, ErrorCode.BUSY,
                f"{self.target} is busy on {self.served_by or 'this host'}: {self.max_concurrent} running, "
                f"{self._waiting} waiting"))
            return
        self._waiting += 1
        keepalive = _Keepalive(self.nc, msg.reply, progress_frame(inv.id, self.served_by)) if msg.reply else None
        try:
            try:
                if self._slots.locked():
                    await asyncio.wait_for(self._slots.acquire(), max(inv.remaining_s(), 0.001))
                else:
                    await self._slots.acquire()  # a free slot: no timer needed
            except asyncio.TimeoutError:
                await self._respond(msg, Reply.failure(inv.id, ErrorCode.TIMEOUT, f"{self.target}: deadline passed while queued", "timeout"))
                return
            finally:
                self._waiting -= 1
            if self.non_retryable and msg.reply and (
                    inv.function in self.non_retryable or inv.operation in self.non_retryable):
                # tell the caller the call has started: if it is lost now, it is not sent again
                await self.nc.publish(msg.reply, progress_frame(inv.id, self.served_by, no_retry=True))
            try:
                reply = await self._run(inv)
            finally:
                self._slots.release()
        finally:
            if keepalive is not None:
                keepalive.cancel()
        await self._respond(msg, reply)

    async def _run(self, inv: Invocation) -> Reply:
        ctx = tracing.extract(inv.trace) if inv.trace else None
        with tracing.tracer().start_as_current_span(
            f"serve {inv.target} {inv.operation}", context=ctx, kind=otel_trace.SpanKind.SERVER,
            attributes={"trellis.invocation_id": inv.id, "trellis.source": inv.source, "trellis.attempt": inv.attempt},
        ):
            try:
                result = await self.handler(inv)
            except RpcError as exc:
                self.stats["failed"] += 1
                return Reply.failure(inv.id, exc.code, exc.message, exc.kind)
            except TrellisError as exc:
                self.stats["failed"] += 1
                return Reply.failure(inv.id, exc.code, exc.message)
            except Exception as exc:
                self.stats["failed"] += 1
                log.exception("invocation %s %s failed", inv.id, inv.operation)
                return Reply.failure(inv.id, ErrorCode.INTERNAL, f"{exc.__class__.__name__}: {exc}")
        self.stats["served"] += 1
        return Reply(id=inv.id, ok=True, result=result)

    async def _respond(self, msg: Msg, reply: Reply) -> None:
        if not msg.reply:
            return
        reply.served_by = self.served_by
        try:
            frame = reply.encode()
        except EnvelopeError as exc:
            frame = Reply.failure(reply.id, ErrorCode.INTERNAL, f"result cannot be encoded: {exc}").encode()
        limit = self.nc.max_payload
        if limit and len(frame) > limit:
            # NATS would drop it and the caller would see a lost instance: say what happened instead
            frame = Reply.failure(
                reply.id, ErrorCode.INVOCATION_FAILED,
                f"{self.target}: reply of {len(frame)} bytes exceeds the NATS max payload of {limit} bytes",
                "too_large").encode()
        try:
            await self.nc.publish(msg.reply, frame)
        except Exception as exc:
            log.debug("reply for %s lost: %r", reply.id, exc)


class _Keepalive:
    """Progress frames every PROGRESS_INTERVAL_S while a call runs: a timer, not a task per call."""

    __slots__ = ("nc", "reply", "frame", "handle")

    def __init__(self, nc: Client, reply: str, frame: bytes) -> None:
        self.nc, self.reply, self.frame = nc, reply, frame
        self.handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            PROGRESS_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        loop.create_task(self._send())
        self.handle = loop.call_later(PROGRESS_INTERVAL_S, self._tick)

    async def _send(self) -> None:
        try:
            await self.nc.publish(self.reply, self.frame)
        except Exception:
            self.cancel()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
