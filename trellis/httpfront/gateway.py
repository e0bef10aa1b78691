"""Calling the linked component for one HTTP request, and saying how it went.

The front's own lean path over NATS, built from the lattice's envelope codec
and subject names (``interfaces``): one wildcard reply subscription, one
future per call, no task per call. It follows the lattice's failover rules
(docs/architecture.md, "Retries") with one difference HTTP needs: waiting for
an instance is bounded separately from the call, so a request to a component
nothing serves ends in a prompt ``503`` instead of a ``504`` after the whole
timeout. A failure is a :class:`CallFailed` carrying the HTTP status:

* no responders, or every instance busy, for ``instance_wait`` → 503;
* the deadline passed (here, or inside the component: kind ``timeout``) → 504;
* the serving instance went silent (no progress frames for ``silence_s``): sent
  again for idempotent methods (at-least-once), else 502 (at-most-once);
* any error the component or its host returned (a trap, ``bad_argument``, …) → 502.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any

from nats.aio.msg import Msg

from trellis.interfaces import subjects
from trellis.interfaces.envelope import PART_HEADER, EnvelopeError, Invocation, Reply, join_part
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL
from trellis.interfaces.errors import ErrorCode

from . import wire

log = logging.getLogger("trellis.providers.http_server")

INTERFACE = "trellis:http/incoming-handler"
FUNCTION = "handle"
#: no progress frame for this long: the instance is presumed dead (the lattice's default)
SILENCE_S = 1.0
_NO_RESPONDERS = object()
_DEADLINE = object()


class CallFailed(Exception):
    """The call gave no response; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Pending:
    """One attempt: its future is resolved by the reply (or a 503) or by its timer (silence, deadline)."""

    __slots__ = ("future", "reply", "progress_at", "deadline", "timer", "parts")

    def __init__(self, future: asyncio.Future[Any], now: float, deadline: float) -> None:
        self.future = future
        self.reply: Any = None
        self.progress_at = now
        self.deadline = deadline
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
        self.stats = {"calls": 0, "retries": 0, "no_responders": 0, "busy": 0, "lost": 0}

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply, pending_msgs_limit=65536)

    async def close(self) -> None:
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
        p = self._pending.get(msg.subject[len(self._prefix):])
        if p is None or p.reply is not None:
            return
        if msg.headers and msg.headers.get("Status") == "503":
            reply: Any = _NO_RESPONDERS
        else:
            try:
                data = msg.data
                part = msg.headers.get(PART_HEADER) if msg.headers else None
                if part is not None:
                    p.parts, data = join_part(p.parts, part, data)
                    if data is None:
                        p.progress_at = time.monotonic()
                        return
                reply = Reply.decode(data)
            except EnvelopeError as exc:
                reply = Reply.failure("", ErrorCode.INTERNAL, f"bad reply: {exc}")
            if reply.progress:
                p.progress_at = time.monotonic()  # the timer looks at this when it fires
                return
        p.reply = reply
        if not p.future.done():
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
                   invocation_id: str | None = None) -> Any:
        """The component's response record (plain), or :class:`CallFailed`."""
        self.stats["calls"] += 1
        now = time.time()
        inv = Invocation(
            target=target, interface=INTERFACE, function=FUNCTION, args=[request], source=self.source,
            id=invocation_id or self.new_id(), deadline_ms=int((now + timeout_s) * 1000), link=link_name,
            trace=trace or {},
        )
        deadline = time.monotonic() + timeout_s
        wait_until = time.monotonic() + instance_wait_s
        subject = self._subject(target)
        backoff = 0.01
        unavailable = ""
        while True:
            frame = inv.encode()
            if len(frame) > self.max_payload:
                raise CallFailed(wire.TOO_LARGE, f"the request is {len(frame)} bytes encoded, over the lattice's "
                                                 f"message limit of {self.max_payload} bytes (NATS max_payload)")
            token = str(next(self._seq))
            pending = _Pending(asyncio.get_running_loop().create_future(), time.monotonic(), deadline)
            self._pending[token] = pending
            try:
                try:
                    await self.nc.publish(subject, frame, reply=self._prefix + token)
                except Exception as exc:  # closed, or the reconnect buffer is full
                    raise CallFailed(wire.UNAVAILABLE, f"cannot reach the lattice: {exc or type(exc).__name__}")
                reply = await self._await(pending)
            finally:
                self._pending.pop(token, None)
                if pending.timer is not None:
                    pending.timer.cancel()
            if reply is _DEADLINE:
                raise CallFailed(wire.TIMED_OUT, f"component {target!r} did not answer within {timeout_s * 1000:.0f} ms")
            if reply is None:  # silence: the instance is presumed dead
                self.stats["lost"] += 1
                if not retry_lost:
                    raise CallFailed(wire.FAILED, f"the instance serving {target!r} stopped answering; "
                                                  f"{inv.operation} was not sent again (method not idempotent)")
                backoff = 0.0
            elif reply is _NO_RESPONDERS:
                self.stats["no_responders"] += 1
                unavailable = f"no instance of component {target!r} is running"
            elif reply.ok:
                return reply.result
            else:
                err = reply.error
                assert err is not None
                if err.code != ErrorCode.BUSY:
                    raise call_failure(target, err.code, err.kind, err.message, inv.id)
                self.stats["busy"] += 1
                unavailable = f"every instance of component {target!r} is busy"
            mono = time.monotonic()
            if reply is not None and mono + backoff >= min(wait_until, deadline):  # never started: 503
                raise CallFailed(wire.UNAVAILABLE, unavailable)
            if mono >= deadline:
                raise CallFailed(wire.TIMED_OUT, f"component {target!r} did not answer within {timeout_s * 1000:.0f} ms")
            self.stats["retries"] += 1
            inv.attempt += 1
            if backoff:
                await asyncio.sleep(min(backoff, deadline - mono))
            backoff = min(max(backoff * 2, 0.01), 0.25)

    async def _await(self, p: _Pending) -> Any:
        """The reply; None when the instance went silent; _DEADLINE when time is up.

        One timer per attempt, re-armed only when it fires while progress frames keep
        coming (a call longer than ``silence_s``); a reply cancels it.
        """
        p.timer = asyncio.get_running_loop().call_later(
            max(0.0, min(p.deadline, p.progress_at + self.silence_s) - time.monotonic()), self._check, p)
        return await p.future

    def _check(self, p: _Pending) -> None:
        p.timer = None
        if p.future.done():
            return
        now = time.monotonic()
        if now >= p.deadline:
            p.future.set_result(_DEADLINE)
        elif now - p.progress_at >= self.silence_s:
            p.future.set_result(None)
        else:
            p.timer = asyncio.get_running_loop().call_later(
                min(p.deadline, p.progress_at + self.silence_s) - now, self._check, p)


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
