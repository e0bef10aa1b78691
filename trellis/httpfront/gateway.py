"""Calling the linked component for one HTTP request, and saying how it went.

The front's own lean path over NATS, built from the lattice's envelope codec
and subject names (``interfaces``): one wildcard reply subscription, one
future per call, no task per call. Its decisions are the lattice's call policy
(``interfaces/call_policy.py``; docs/architecture.md, "Retries") with one
setting HTTP needs: waiting for an instance is bounded separately from the call
(``instance_wait_s``), so a request to a component nothing serves ends in a
prompt ``503`` instead of a ``504`` after the whole timeout. A failure is a
:class:`CallFailed` carrying the HTTP status:

* no responders, or every instance busy, for ``instance_wait`` → 503;
* the deadline passed (here, or inside the component: kind ``timeout``) → 504;
* the serving instance went silent (no progress frames for ``silence_s``): sent
  again for idempotent methods (at-least-once), else 502 (at-most-once); also
  502 when the component marks the function at-most-once (``nr``) and it had
  started;
* any error the component or its host returned (a trap, ``bad_argument``, …) → 502.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from trellis.interfaces import subjects
from trellis.interfaces.call_policy import (
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
from trellis.interfaces.envelope import PART_HEADER, EnvelopeError, Invocation, Reply, join_part
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL
from trellis.kit.natsstream import StreamHub

from . import wire

if TYPE_CHECKING:
    from .streaming import HttpExchange

log = logging.getLogger("trellis.providers.http_server")

INTERFACE = "trellis:http/incoming-handler"
FUNCTION = "handle"
#: no progress frame for this long: the instance is presumed dead (the lattice's default)
SILENCE_S = 1.0
#: the first wait before sending again a request no instance took (then doubling, up to 0.25 s)
FIRST_BACKOFF_S = 0.01


class CallFailed(Exception):
    """The call gave no response; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Pending(Chained):
    """One attempt: its future is resolved by what the reply callback saw (a reply, no
    responders, a bad reply) or by its timer (the call state's decision: silence, deadline); an
    attempt given up as lost is still listened to (:class:`~trellis.interfaces.call_policy.Chained`:
    a 2.7 MB echo from a slowed instance used to end in 504)."""

    __slots__ = ("future", "state", "timer", "parts")

    def __init__(self, future: asyncio.Future[Any], state: CallState) -> None:
        super().__init__()
        self.future = future
        self.state = state
        self.timer: asyncio.TimerHandle | None = None
        self.parts: list[bytes] | None = None  # a reply in several NATS messages, so far


class NatsCaller:
    """Invokes ``trellis:http/incoming-handler.handle`` on components, on one NATS connection."""

    def __init__(self, nc: Any, lattice: str, source: str, *, silence_s: float = SILENCE_S) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.source = source
        self.silence_s = silence_s
        self._prefix = ""
        self._sub: Any = None
        self._pending: dict[str, _Pending] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:16] + "-"  # ids unique across instances, cheap per call
        self._subjects: dict[str, str] = {}
        self._policies: dict[float, RetryPolicy] = {}
        self.stats = {"calls": 0, "retries": 0, "no_responders": 0, "busy": 0, "lost": 0}
        #: byte streams for the bodies of streamed requests (``relay.py``), once started
        self.hub: StreamHub | None = None

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply, pending_msgs_limit=65536)
        self.hub = await StreamHub(self.nc, self.lattice).start()

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close("the HTTP front is closing")
            self.hub = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
        for p in self._pending.values():
            if not p.future.done():
                p.future.cancel()
        self._pending.clear()

    @property
    def max_payload(self) -> int:
        return int(getattr(self.nc, "max_payload", 0) or 1024 * 1024)

    async def _on_reply(self, msg: Msg) -> None:
        sent = self._pending.get(msg.subject[len(self._prefix):])
        if sent is None:
            return
        p = sent.live()  # an earlier attempt's answer is the call's too (parts join per attempt)
        if p.future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            if p is sent:  # nobody took this attempt (an earlier one's no-responders is old news)
                p.future.set_result(CallEvent.NO_RESPONDERS)
            return
        try:
            data = msg.data
            part = msg.headers.get(PART_HEADER) if msg.headers else None
            if part is not None:
                sent.parts, whole = join_part(sent.parts, part, data)
                if whole is None:
                    p.state.on(CallEvent.PROGRESS, time.monotonic())
                    return
                data = whole
            reply = Reply.decode(data)
        except EnvelopeError as exc:
            p.future.set_result(BadReply(str(exc)))
            return
        if reply.progress:  # the timer asks the state when it fires
            p.state.on(CallEvent.PROGRESS_NR if reply.no_retry else CallEvent.PROGRESS, time.monotonic())
            return
        p.future.set_result(reply)

    def new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    def _subject(self, target: str) -> str:
        s = self._subjects.get(target)
        if s is None:
            s = self._subjects[target] = subjects.rpc(self.lattice, target)
        return s

    async def call(self, target: str, link_name: str, request: dict[str, Any], *, timeout_s: float,
                   instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None = None,
                   invocation_id: str | None = None, exchange: HttpExchange | None = None) -> Any:
        """The component's response record (plain), or :class:`CallFailed`. With an ``exchange`` (a
        streamed request, ``streaming.py``) the bodies go on byte streams (``relay.py``)."""
        if exchange is not None and self.hub is not None:
            from . import relay

            return await relay.call(self, self.hub, target, link_name, request, timeout_s=timeout_s,
                                    instance_wait_s=instance_wait_s, retry_lost=retry_lost, trace=trace,
                                    invocation_id=invocation_id, exchange=exchange)
        self.stats["calls"] += 1
        now = time.time()
        inv = Invocation(
            target=target, interface=INTERFACE, function=FUNCTION, args=[request], source=self.source,
            id=invocation_id or self.new_id(), deadline_ms=int((now + timeout_s) * 1000), link=link_name,
            trace=trace or {},
        )
        mono = time.monotonic()
        policy = self._policies.get(instance_wait_s)
        if policy is None:
            if len(self._policies) >= 64:
                self._policies.clear()
            policy = self._policies[instance_wait_s] = RetryPolicy(
                silence_s=self.silence_s, first_backoff_s=FIRST_BACKOFF_S, instance_wait_s=instance_wait_s)
        state = CallState(mono + timeout_s, mono, retryable=retry_lost, policy=policy)
        subject = self._subject(target)
        loop = asyncio.get_running_loop()
        tokens: list[str] = []  # every attempt's: an answer to any of them ends the call
        last: _Pending | None = None
        try:
            while True:
                d = state.on(CallEvent.SENT, time.monotonic())
                if d.act is Act.FAIL:
                    raise self._failed(d, target, inv, timeout_s)
                frame = inv.encode()
                if len(frame) > self.max_payload:
                    raise CallFailed(wire.TOO_LARGE, f"the request is {len(frame)} bytes encoded, over the lattice's "
                                                     f"message limit of {self.max_payload} bytes (NATS max_payload)")
                token = str(next(self._seq))
                pending = _Pending(loop.create_future(), state)
                if last is not None:
                    last.then = pending
                last = pending
                self._pending[token] = pending
                tokens.append(token)
                try:
                    try:
                        await self.nc.publish(subject, frame, reply=self._prefix + token)
                    except Exception as exc:  # closed, or the reconnect buffer is full
                        raise CallFailed(wire.UNAVAILABLE,
                                         f"cannot reach the lattice: {exc or type(exc).__name__}") from exc
                    pending.timer = loop.call_later(d.delay_s, self._tick, pending)
                    outcome = await pending.future
                finally:
                    if pending.timer is not None:
                        pending.timer.cancel()
                cls = outcome.__class__
                if cls is Reply:
                    err = outcome.error
                    d = state.on(CallEvent.OK if err is None else ErrorReply(err.code, err.message, err.kind),
                                 time.monotonic())
                    if d is RETURN:
                        return outcome.result
                elif cls is Decision:  # the state's own, from the timer: lost, or the deadline
                    d = outcome
                else:  # no responders, a bad reply
                    d = state.on(outcome, time.monotonic())
                if d.lost:
                    self.stats["lost"] += 1
                if d.act is Act.FAIL:
                    raise self._failed(d, target, inv, timeout_s)
                if d.cause is Cause.BUSY:
                    self.stats["busy"] += 1
                elif d.cause is Cause.NO_RESPONDERS:
                    self.stats["no_responders"] += 1
                self.stats["retries"] += 1
                inv.attempt += 1
                if d.delay_s:
                    await asyncio.sleep(d.delay_s)
        finally:
            for t in tokens:
                self._pending.pop(t, None)

    @staticmethod
    def _tick(p: _Pending) -> None:
        """The wait the call state asked for is over: it says wait more (progress came), or how
        the attempt ended (silent, deadline)."""
        p.timer = None
        if p.future.done():
            return
        d = p.state.on(CallEvent.TICK, time.monotonic())
        if d.act is Act.WAIT:
            p.timer = asyncio.get_running_loop().call_later(d.delay_s, NatsCaller._tick, p)
        else:
            p.future.set_result(d)

    @staticmethod
    def _failed(d: Decision, target: str, inv: Invocation, timeout_s: float) -> CallFailed:
        """A failed call's decision as the HTTP status and reason to answer with."""
        failure = d.failure
        if failure is Failure.CALLEE:
            return call_failure(target, d.code, d.kind, d.message, inv.id)
        if failure is Failure.TIMEOUT:
            return CallFailed(wire.TIMED_OUT, f"component {target!r} did not answer within {timeout_s * 1000:.0f} ms")
        if failure is Failure.UNAVAILABLE:
            return CallFailed(wire.UNAVAILABLE, f"every instance of component {target!r} is busy"
                              if d.cause is Cause.BUSY else f"no instance of component {target!r} is running")
        if failure is Failure.LOST:
            why = ("the component marks it at-most-once" if d.cause is Cause.STARTED_NR
                   else "method not idempotent")
            return CallFailed(wire.FAILED, f"the instance serving {target!r} stopped answering; "
                                           f"{inv.operation} was not sent again ({why})")
        return call_failure(target, ErrorCode.INTERNAL, "", f"bad reply: {d.message}", inv.id)


def call_failure(target: str, code: str, kind: str, message: str, inv_id: str) -> CallFailed:
    """A component's error reply as an HTTP status and a reason: what the component said, in one
    line (the whole message goes to the log)."""
    log.warning("invocation %s of %s failed: [%s/%s] %s", inv_id, target, code, kind, message)
    if code == ErrorCode.TIMEOUT or kind == "timeout":
        return CallFailed(wire.TIMED_OUT, f"component {target!r} did not finish in time ({kind or code}); "
                                          f"invocation {inv_id}")
    if kind == "request_too_large":  # the component takes no body this large (trellis:http/request-body)
        return CallFailed(wire.TOO_LARGE, f"the request body is more than component {target!r} takes: "
                                          f"{MAX_BYTES_PER_CALL} bytes, unless it reads the body in pieces")
    if kind == "too_large":
        return CallFailed(wire.FAILED, f"component {target!r} failed (too_large: more data than one call can "
                                       f"carry into or out of Wasm, about {MAX_BYTES_PER_CALL / 1e6:.1f} MB); "
                                       f"invocation {inv_id}")
    return CallFailed(wire.FAILED, f"component {target!r} failed ({kind or code}): {brief(message)}; "
                                   f"invocation {inv_id}")


#: the most of a component's error message an HTTP answer carries (the whole of it is in the log)
BRIEF_CHARS = 300


def brief(message: str) -> str:
    """What a failed component said, in one line: the last line of its stderr when it wrote one
    (a Python traceback ends with the exception), else the message's first line."""
    head, sep, stderr = message.partition("guest stderr:")
    lines = [ln.strip() for ln in (stderr if sep else head).splitlines() if ln.strip()]
    if sep:  # what the guest's runtime adds after the exception (componentize-py's Rust panic) is noise
        panic = next((i for i, ln in enumerate(lines) if ln.startswith("thread '") and "panicked" in ln), None)
        kept = lines[:panic] if panic else lines
        lines = [ln for ln in kept if not ln.startswith("note: run with `RUST_BACKTRACE")] or lines
    text = (lines[-1] if sep else lines[0]) if lines else (message.strip() or "no message")
    return text if len(text) <= BRIEF_CHARS else text[:BRIEF_CHARS - 1] + "…"
