"""Calling components and providers over the lattice, with failover.

One publish per attempt to ``trellis.<lattice>.rpc.<target>``; every instance
of the target shares a queue group, so NATS picks one. The reply inbox is a
per-connection wildcard subscription (no subscription per call).

Failover follows the lattice's call policy (docs/architecture.md, "Retries"), decided
by one :class:`~trellis.interfaces.call_policy.CallState` per call: no responders and
``busy`` are sent again with a short backoff until the deadline; an attempt silent for
``silence_s`` (no progress frame, no reply) is lost, and sent again unless the call is
at-most-once (``retryable=False``, or the callee flagged the function ``nr``); the
callee's own errors are never retried.

Per attempt the client keeps one future, resolved by the reply subscription's
callback (which feeds progress frames to the call's state) or by one ``call_later``
timer, armed for the wait the state asks for, that asks the state again when it fires
(and re-arms itself when progress came meanwhile). Invocation ids come
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
from .call_policy import (
    RETURN,
    Act,
    BadReply,
    CallEvent,
    CallState,
    Cause,
    Chained,
    Decision,
    ErrorReply,
    Failure,
    RetryPolicy,
)
from .envelope import PART_HEADER, EnvelopeError, IdSource, Invocation, Reply, join_part
from .errors import ErrorCode, TrellisError
from .resources import parse_address

PROGRESS_INTERVAL_S = 0.25
DEFAULT_SILENCE_S = 1.0
DEFAULT_TIMEOUT_S = 30.0
_CACHE_MAX = 4096  # per client: subjects of targets, parsed operation names
_TICK = CallEvent.TICK
_PROGRESS = CallEvent.PROGRESS
_PROGRESS_NR = CallEvent.PROGRESS_NR
_SENT = CallEvent.SENT
_OK = CallEvent.OK
_FAIL = Act.FAIL
_WAIT = Act.WAIT


class RpcError(TrellisError):
    """A call failed; ``code`` (ErrorCode) and ``kind`` (e.g. trap, timeout) say how."""

    def __init__(self, message: str, code: ErrorCode | str = ErrorCode.INVOCATION_FAILED, kind: str = "") -> None:
        try:
            super().__init__(message, code)
        except ValueError:
            super().__init__(message, ErrorCode.INTERNAL)
        self.kind = kind


def call_error(d: Decision, inv: Invocation) -> RpcError:
    """A failed call's decision (``call_policy``) as the ``RpcError`` a caller raises."""
    failure = d.failure
    if failure is Failure.CALLEE:
        return RpcError(d.message, d.code, d.kind)
    what = f"call to {inv.target} {inv.operation}"
    if failure is Failure.TIMEOUT:
        cause = d.cause
        if cause is None:
            return RpcError(f"{what} timed out", ErrorCode.TIMEOUT, "timeout")
        problem = (d.message if cause is Cause.BUSY else f"nobody serves {inv.target!r}"
                   if cause is Cause.NO_RESPONDERS else "the instance serving it went silent")
        return RpcError(f"{what} timed out: {problem}", ErrorCode.TIMEOUT, "timeout")
    if failure is Failure.LOST:
        return RpcError(f"{what} was lost in flight (not retried: marked non-retryable)",
                        ErrorCode.INVOCATION_FAILED, "lost")
    if failure is Failure.BAD_REPLY:
        return RpcError(f"bad reply from {inv.target}: {d.message}", ErrorCode.INTERNAL)
    # UNAVAILABLE (only with an instance wait)
    return RpcError(d.message or f"nobody serves {inv.target!r}", d.code, "unavailable")


class Attempt(Chained):
    """One send of an invocation: a future the reply callback or the call state's timer resolves
    (with a :class:`Decision` other than WAIT, or what the reply callback saw); an attempt given
    up as lost is still listened to (:class:`~.call_policy.Chained`)."""

    __slots__ = ("fut", "state", "timer", "parts")

    def __init__(self, fut: asyncio.Future[Any], state: CallState) -> None:
        super().__init__()
        self.fut = fut
        self.state = state
        self.timer: asyncio.TimerHandle | None = None
        #: the parts so far of a reply too large for one NATS message
        self.parts: list[bytes] | None = None

    def heard(self, reply: Reply, now: float) -> None:
        """A progress frame came: the callee is alive (and, when it says so, at-most-once)."""
        self.state.on(_PROGRESS_NR if reply.no_retry else _PROGRESS, now)

    def watch(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> None:
        """Arm the timer that asks the call's state again after ``delay_s`` (its WAIT)."""
        self.timer = loop.call_later(delay_s, self._tick)

    def stop_watching(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        """The wait is over: the state says wait more (progress came meanwhile, or this loop
        itself was stalled), or how the attempt ended (lost, deadline)."""
        self.timer = None
        if self.fut.done():
            return
        loop = asyncio.get_running_loop()
        d = self.state.on(_TICK, loop.time())
        if d.act is _WAIT:
            self.timer = loop.call_later(d.delay_s, self._tick)
        else:
            self.fut.set_result(d)


class RpcClient:
    def __init__(self, nc: Client, lattice: str, *, source: str = "cli",
                 silence_s: float = DEFAULT_SILENCE_S) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.source = source
        self.silence_s = silence_s
        self.policy = RetryPolicy(silence_s=silence_s)
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
        sent = self._pending.get(msg.subject[len(self._prefix):])
        if sent is None:
            return  # a late frame of a call already over
        a = sent if sent.then is None else sent.live()  # an earlier attempt's answer is the call's too
        if a.fut.done():
            return
        data = msg.data
        if msg.headers:
            if msg.headers.get("Status") == "503":
                if a is sent:  # nobody took this attempt (an earlier one's no-responders is old news)
                    a.fut.set_result(CallEvent.NO_RESPONDERS)
                return
            part = msg.headers.get(PART_HEADER)
            if part is not None:
                whole = self._join(sent, a, part, data)  # parts join per attempt
                if whole is None:
                    return
                data = whole
        try:
            reply = Reply.decode(data)
        except EnvelopeError as exc:
            a.fut.set_result(BadReply(str(exc)))
            return
        if reply.progress:
            if reply.no_retry and not a.state.at_most_once:
                self.stats["started_at_most_once"] += 1
            a.heard(reply, asyncio.get_running_loop().time())  # the silence timer looks at this when it fires
            return
        a.fut.set_result(reply)

    @staticmethod
    def _join(sent: Attempt, a: Attempt, part: str, data: bytes) -> bytes | None:
        """One part of a reply sent in several NATS messages to attempt ``sent`` (``a``: the
        call's attempt under way): the whole frame once the last came, else None (each part
        counts as a sign of life)."""
        try:
            sent.parts, whole = join_part(sent.parts, part, data)
        except EnvelopeError as exc:
            sent.parts = None
            a.fut.set_result(BadReply(str(exc)))
            return None
        a.state.on(_PROGRESS, asyncio.get_running_loop().time())
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
        now = loop.time()
        state = CallState(now + inv.remaining_s(), now, retryable=retryable, policy=self.policy)
        tokens: list[str] = []  # every attempt's: an answer to any of them ends the call
        last: Attempt | None = None
        try:
            while True:
                d = state.on(_SENT, now)
                if d.act is _FAIL:
                    raise call_error(d, inv)
                token = f"{next(self._tokens):x}"
                a = Attempt(loop.create_future(), state)
                if last is not None:
                    last.then = a
                last = a
                pending[token] = a
                tokens.append(token)
                stats["attempts"] += 1
                try:
                    await self.nc.publish(subject, inv.encode(), reply=self._prefix + token)
                    a.watch(loop, d.delay_s)
                    outcome = await a.fut
                finally:
                    a.stop_watching()
                cls = outcome.__class__
                if cls is Reply:
                    err = outcome.error
                    d = state.on(_OK if err is None else ErrorReply(err.code, err.message, err.kind), loop.time())
                    if d is RETURN:
                        return outcome.result
                elif cls is Decision:  # the state's own, from the timer: lost, or the deadline
                    d = outcome
                else:  # no responders, a bad reply
                    d = state.on(outcome, loop.time())
                if d.lost:
                    stats["lost"] += 1
                if d.act is _FAIL:
                    raise call_error(d, inv)
                if d.cause is Cause.BUSY:
                    stats["busy"] += 1
                elif d.cause is Cause.NO_RESPONDERS:
                    stats["no_responders"] += 1
                stats["retries"] += 1
                inv.attempt += 1
                await asyncio.sleep(d.delay_s)
                now = loop.time()
        finally:
            for t in tokens:
                pending.pop(t, None)
