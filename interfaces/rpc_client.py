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

Per attempt the client keeps one future, resolved by the reply subscription's
callback (which also absorbs progress frames) or by one ``call_later`` timer
that fires at the end of the silence window or at the deadline, whichever is
first, and re-arms itself when progress came meanwhile. Invocation ids come
from a per-client random prefix and a counter; a span is made only when
tracing is configured (:func:`trellis.interfaces.tracing.enabled`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from . import subjects, tracing
from .envelope import PART_HEADER, EnvelopeError, IdSource, Invocation, Reply, join_part
from .errors import ErrorCode, TrellisError
from .resources import parse_address

PROGRESS_INTERVAL_S = 0.25
DEFAULT_SILENCE_S = 1.0
DEFAULT_TIMEOUT_S = 30.0
#: a silence timer this late means the caller's own loop stalled; it reads its sockets before judging
_STALLED_S = 0.1
_CACHE_MAX = 4096  # per client: subjects of targets, parsed operation names


class RpcError(TrellisError):
    """A call failed; ``code`` (ErrorCode) and ``kind`` (e.g. trap, timeout) say how."""

    def __init__(self, message: str, code: ErrorCode | str = ErrorCode.INVOCATION_FAILED, kind: str = "") -> None:
        try:
            super().__init__(message, code)
        except ValueError:
            super().__init__(message, ErrorCode.INTERNAL)
        self.kind = kind


# how an attempt ended, besides a Reply (or an RpcError for a reply that cannot be read)
NO_RESPONDERS = object()
LOST = object()
TIMED_OUT = object()


class Attempt:
    """One send of an invocation: a future the reply callback or the silence timer resolves."""

    __slots__ = ("fut", "inv", "heard_at", "at_most_once", "timer", "parts")

    def __init__(self, fut: asyncio.Future[Any], inv: Invocation, now: float) -> None:
        self.fut = fut
        self.inv = inv
        self.heard_at = now  # loop time of the send, then of the latest progress frame
        self.at_most_once = False
        self.timer: asyncio.TimerHandle | None = None
        #: the parts so far of a reply too large for one NATS message
        self.parts: list[bytes] | None = None

    def heard(self, reply: Reply, now: float) -> None:
        """A progress frame came: the callee is alive (and, when it says so, at-most-once)."""
        self.heard_at = now
        if reply.no_retry:
            self.at_most_once = True

    def watch(self, loop: asyncio.AbstractEventLoop, silence_s: float) -> None:
        """Arm the timer that ends the attempt as :data:`LOST` after ``silence_s`` without a
        frame, or :data:`TIMED_OUT` at the deadline (whichever is first); it re-arms itself
        when progress came meanwhile."""
        self.timer = loop.call_later(min(silence_s, max(self.inv.remaining_s(), 0.001)), self._silence, silence_s)

    def stop_watching(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _silence(self, silence_s: float) -> None:
        """A timer that fires late means this loop itself was stalled (a long GC, a busy CPU, a
        handler that blocked it): frames that arrived meanwhile may still be unread (uvloop runs
        timers before reading sockets), so the silence is this process's, not the callee's: the
        window starts again from now. A stall just after the send would otherwise leave the
        callee (whose request may not even have left this process) a fraction of its window."""
        timer, self.timer = self.timer, None
        if self.fut.done():
            return
        remaining = self.inv.remaining_s()
        if remaining <= 0:
            self.fut.set_result(TIMED_OUT)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if timer is not None and now - timer.when() > _STALLED_S:
            self.heard_at = now
            self.timer = loop.call_later(min(silence_s, remaining), self._silence, silence_s)
            return
        quiet = now - self.heard_at
        if quiet >= silence_s:
            self.fut.set_result(LOST)
            return
        self.timer = loop.call_later(min(silence_s - quiet, remaining), self._silence, silence_s)


class RpcClient:
    def __init__(self, nc: Client, lattice: str, *, source: str = "cli",
                 silence_s: float = DEFAULT_SILENCE_S) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.source = source
        self.silence_s = silence_s
        self._prefix = ""
        self._pending: dict[str, Attempt] = {}
        self._sub: Any = None
        self._subscribing = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens = itertools.count(1)
        #: invocation ids of this client's calls: a random prefix of its own and a counter
        self.new_id = IdSource()
        self._subjects: dict[str, str] = {}
        self._operations: dict[str, tuple[str, str]] = {}
        self.stats = {"attempts": 0, "retries": 0, "no_responders": 0, "lost": 0, "busy": 0,
                      "started_at_most_once": 0}
        #: tried before NATS: a ``local_rpc.LocalComponentCaller`` (a provider's calls to the
        #: components of its own host); it answers ``local_rpc.REMOTE`` for a call to send here
        self.local: Any = None

    async def _ensure_inbox(self) -> None:
        """One wildcard reply subscription per client, made by the first call (once, even
        when several calls start together)."""
        async with self._subscribing:
            if self._sub is None:
                self._loop = asyncio.get_running_loop()  # the connection's: replies and timers run on it
                prefix = self.nc.new_inbox() + "."
                self._sub = await self.nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        a = self._pending.get(msg.subject[len(self._prefix):])
        if a is None or a.fut.done():
            return  # a late frame of an attempt already over
        data = msg.data
        if msg.headers:
            if msg.headers.get("Status") == "503":
                a.fut.set_result(NO_RESPONDERS)
                return
            part = msg.headers.get(PART_HEADER)
            if part is not None:
                data = self._join(a, part, data)
                if data is None:
                    return
        try:
            reply = Reply.decode(data)
        except EnvelopeError as exc:
            a.fut.set_result(RpcError(f"bad reply from {a.inv.target}: {exc}", ErrorCode.INTERNAL))
            return
        if reply.progress:
            if reply.no_retry and not a.at_most_once:
                self.stats["started_at_most_once"] += 1
            a.heard(reply, asyncio.get_running_loop().time())  # the silence timer looks at this when it fires
            return
        a.fut.set_result(reply)

    @staticmethod
    def _join(a: Attempt, part: str, data: bytes) -> bytes | None:
        """One part of a reply sent in several NATS messages: the whole frame once the last
        came, else None (each part counts as a sign of life)."""
        try:
            a.parts, whole = join_part(a.parts, part, data)
        except EnvelopeError as exc:
            a.parts = None
            a.fut.set_result(RpcError(f"bad reply from {a.inv.target}: {exc}", ErrorCode.INTERNAL))
            return None
        a.heard_at = asyncio.get_running_loop().time()
        return whole

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    def _subject(self, target: str) -> str:
        subject = self._subjects.get(target)
        if subject is None:
            subject = subjects.rpc(self.lattice, target)  # validates the id
            if len(self._subjects) >= _CACHE_MAX:
                self._subjects.clear()
            self._subjects[target] = subject
        return subject

    def _operation(self, operation: str) -> tuple[str, str]:
        parsed = self._operations.get(operation)
        if parsed is None:
            try:
                parsed = parse_address(operation)
            except ValueError as exc:
                raise RpcError(str(exc), ErrorCode.BAD_REQUEST, "bad_address") from None
            if len(self._operations) >= _CACHE_MAX:
                self._operations.clear()
            self._operations[operation] = parsed
        return parsed

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
        interface, function = self._operation(operation)
        self._subject(target)
        inv = Invocation(target, interface, function, list(args) if args else [], self.source, self.new_id(),
                         deadline_ms or int((time.time() + timeout_s) * 1000), link)
        if not tracing.enabled():  # no span to make; a context being passed through still travels on
            inv.trace = trace if trace is not None else tracing.inject()
            return await self.invoke(inv, retryable=retryable)
        with tracing.tracer().start_as_current_span(
            f"call {target} {operation}", attributes={"trellis.invocation_id": inv.id, "trellis.target": target},
        ):
            inv.trace = trace if trace is not None else tracing.inject()
            return await self.invoke(inv, retryable=retryable)

    async def invoke(self, inv: Invocation, *, retryable: bool = True) -> Any:
        if self.local is not None:
            result = await self.local.call(inv, retryable)
            if result is not self.local.REMOTE:
                return result
        if self._sub is None:
            await self._ensure_inbox()
        subject = self._subject(inv.target)
        loop = self._loop or asyncio.get_running_loop()
        pending = self._pending
        stats = self.stats
        backoff = 0.02
        last_problem = "no instance answered"
        while True:
            remaining = inv.remaining_s()
            if remaining <= 0:
                raise RpcError(f"call to {inv.target} {inv.operation} timed out: {last_problem}",
                               ErrorCode.TIMEOUT, "timeout")
            token = f"{next(self._tokens):x}"
            a = Attempt(loop.create_future(), inv, loop.time())
            pending[token] = a
            stats["attempts"] += 1
            try:
                await self.nc.publish(subject, inv.encode(), reply=self._prefix + token)
                a.watch(loop, self.silence_s)
                outcome = await a.fut
            finally:
                del pending[token]
                a.stop_watching()
            if outcome.__class__ is Reply:
                if outcome.ok:
                    return outcome.result
                err = outcome.error
                assert err is not None
                if err.code != ErrorCode.BUSY:
                    raise RpcError(err.message, err.code, err.kind)
                stats["busy"] += 1
                last_problem = err.message
            elif outcome is NO_RESPONDERS:
                stats["no_responders"] += 1
                last_problem = f"nobody serves {inv.target!r}"
            elif outcome is LOST:
                stats["lost"] += 1
                last_problem = "the instance serving it went silent"
                if not retryable or a.at_most_once:
                    raise RpcError(f"call to {inv.target} {inv.operation} was lost in flight "
                                   "(not retried: marked non-retryable)", ErrorCode.INVOCATION_FAILED, "lost")
                backoff = 0.0  # a different instance may answer at once
            elif outcome is TIMED_OUT:
                raise RpcError(f"call to {inv.target} {inv.operation} timed out", ErrorCode.TIMEOUT, "timeout")
            else:
                raise outcome  # an RpcError: a reply that could not be read
            stats["retries"] += 1
            inv.attempt += 1
            await asyncio.sleep(min(backoff, max(0.0, inv.remaining_s())))
            backoff = min(max(backoff * 2, 0.02), 0.25)
