"""Calling components and providers over the lattice, with failover.

One publish per attempt to ``trellis.<lattice>.rpc.<target>``; every instance
of the target shares a queue group, so NATS picks one. The reply inbox is a
per-connection wildcard subscription (no subscription per call).

Failover rules (docs/architecture.md, "Retries"):

* **No responders** (nobody serves the target right now) and **busy** replies
  are always retried, with a short backoff, until the deadline: the call never
  started, so a retry cannot run it twice.
* **Lost in flight**: a serving instance sends a progress frame every
  ``PROGRESS_INTERVAL_S`` while it works; if neither progress nor a reply comes
  for ``silence_s``, the instance is presumed dead. A *retryable* call (the
  default) is then sent again — at-least-once; a call marked non-retryable
  fails with ``lost`` instead — at-most-once.
* Errors raised by the callee (a trap, a WIT ``err``) are never retried.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from . import subjects, tracing
from .envelope import EnvelopeError, Invocation, Reply
from .errors import ErrorCode, TrellisError
from .resources import parse_address

PROGRESS_INTERVAL_S = 0.25
DEFAULT_SILENCE_S = 1.0
DEFAULT_TIMEOUT_S = 30.0


class RpcError(TrellisError):
    """A call failed; ``code`` (ErrorCode) and ``kind`` (e.g. trap, timeout) say how."""

    def __init__(self, message: str, code: ErrorCode | str = ErrorCode.INVOCATION_FAILED, kind: str = "") -> None:
        try:
            super().__init__(message, code)
        except ValueError:
            super().__init__(message, ErrorCode.INTERNAL)
        self.kind = kind


class _Lost(Exception):
    def __init__(self, started_at_most_once: bool = False) -> None:
        super().__init__()
        self.started_at_most_once = started_at_most_once


class RpcClient:
    def __init__(self, nc: Client, lattice: str, *, source: str = "cli",
                 silence_s: float = DEFAULT_SILENCE_S) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.source = source
        self.silence_s = silence_s
        self._prefix = ""
        self._pending: dict[str, asyncio.Queue[Msg]] = {}
        self._sub: Any = None
        self._seq = 0
        self.stats = {"attempts": 0, "retries": 0, "no_responders": 0, "lost": 0, "busy": 0,
                      "started_at_most_once": 0}

    async def _ensure_inbox(self) -> None:
        if self._sub is None:
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        q = self._pending.get(msg.subject[len(self._prefix):])
        if q is not None:
            q.put_nowait(msg)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    async def call(
        self,
        target: str,
        operation: str,
        args: list[Any] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        link: str = "default",
        retryable: bool = True,
        deadline_ms: int | None = None,
        trace: dict[str, str] | None = None,
    ) -> Any:
        """Call ``ns:pkg/iface.func`` (or a bare world function) on ``target``."""
        try:
            interface, function = parse_address(operation)
        except ValueError as exc:
            raise RpcError(str(exc), ErrorCode.BAD_REQUEST, "bad_address") from None
        inv = Invocation(
            target=subjects.check_id("target", target), interface=interface, function=function,
            args=list(args or []), source=self.source, link=link,
            deadline_ms=deadline_ms or int((time.time() + timeout_s) * 1000),
        )
        with tracing.tracer().start_as_current_span(
            f"call {target} {operation}", attributes={"trellis.invocation_id": inv.id, "trellis.target": target},
        ):
            inv.trace = trace if trace is not None else tracing.inject()
            return await self.invoke(inv, retryable=retryable)

    async def invoke(self, inv: Invocation, *, retryable: bool = True) -> Any:
        await self._ensure_inbox()
        subject = subjects.rpc(self.lattice, inv.target)
        backoff = 0.02
        last_problem = "no instance answered"
        while True:
            remaining = inv.remaining_s()
            if remaining <= 0:
                raise RpcError(f"call to {inv.target} {inv.operation} timed out: {last_problem}",
                               ErrorCode.TIMEOUT, "timeout")
            self._seq += 1
            token = f"{self._seq}"
            q: asyncio.Queue[Msg] = asyncio.Queue()
            self._pending[token] = q
            self.stats["attempts"] += 1
            try:
                await self.nc.publish(subject, inv.encode(), reply=self._prefix + token)
                reply = await self._await_reply(q, inv, min(remaining, self.silence_s))
            except _NoResponders:
                self.stats["no_responders"] += 1
                last_problem = f"nobody serves {inv.target!r}"
            except _Lost as lost:
                self.stats["lost"] += 1
                last_problem = "the instance serving it went silent"
                if not retryable or lost.started_at_most_once:
                    raise RpcError(f"call to {inv.target} {inv.operation} was lost in flight "
                                   "(not retried: marked non-retryable)", ErrorCode.INVOCATION_FAILED, "lost") from None
                backoff = 0.0  # a different instance may answer at once
            else:
                if reply.ok:
                    return reply.result
                assert reply.error is not None
                if reply.error.code == ErrorCode.BUSY:
                    self.stats["busy"] += 1
                    last_problem = reply.error.message
                else:
                    raise RpcError(reply.error.message, reply.error.code, reply.error.kind)
            finally:
                self._pending.pop(token, None)
            self.stats["retries"] += 1
            inv.attempt += 1
            await asyncio.sleep(min(backoff, max(0.0, inv.remaining_s())))
            backoff = min(max(backoff * 2, 0.02), 0.25)

    async def _await_reply(self, q: "asyncio.Queue[Msg]", inv: Invocation, silence: float) -> Reply:
        at_most_once = False
        while True:
            wait = min(self.silence_s, max(inv.remaining_s(), 0.001))
            try:
                msg = await asyncio.wait_for(q.get(), wait)
            except asyncio.TimeoutError:
                if inv.remaining_s() <= 0:
                    raise RpcError(f"call to {inv.target} {inv.operation} timed out", ErrorCode.TIMEOUT,
                                   "timeout") from None
                raise _Lost(at_most_once) from None
            if msg.headers and msg.headers.get("Status") == "503":
                raise _NoResponders()
            try:
                reply = Reply.decode(msg.data)
            except EnvelopeError as exc:
                raise RpcError(f"bad reply from {inv.target}: {exc}", ErrorCode.INTERNAL) from None
            if reply.progress:
                if reply.no_retry and not at_most_once:
                    at_most_once = True
                    self.stats["started_at_most_once"] += 1
                continue
            return reply


class _NoResponders(Exception):
    pass
