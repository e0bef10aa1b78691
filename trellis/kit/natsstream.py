"""Byte streams over NATS (the contract: ``trellis/interfaces/bytestream.py``).

A :class:`StreamHub` per process: one wildcard subscription for every stream end it holds, one
ordered outbox, one timer for keepalives and silence. Its ends are :class:`Receiver` and
:class:`Sender`; each is usable from the event loop (``await read()``, ``await write()``) and from
another thread (``read_blocking``, ``write_blocking``: a Wasm thread feeding a guest's streams),
never both at once. Memory is bounded by the receiver's window on both ends: a sender holds
nothing beyond the chunk it is sending, a receiver at most its window.

Every wait ends: data or credit arrives, the peer aborts, the peer goes silent for
``silence_s``, the caller's own deadline passes, or the hub closes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

from trellis.interfaces.bytestream import (
    ABORT,
    CHUNK,
    CREDIT,
    DATA,
    DEFAULT_WINDOW,
    END,
    KEEPALIVE_S,
    PING_FRAME,
    SILENCE_S,
    FrameError,
    StreamError,
    abort_frame,
    credit_frame,
    data_frame,
    end_frame,
    parse,
    read_offer,
    stream_prefix,
)

__all__ = ["Receiver", "Sender", "StreamError", "StreamHub"]

log = logging.getLogger("trellis.natsstream")
#: aborted ends remembered, so a frame that comes after is answered with the abort
_GONE_KEPT = 1024
_MAKING = threading.Lock()


class _End:
    """What both ends share: the hub, a subject, the peer's subject, liveness, failure."""

    def __init__(self, hub: StreamHub, token: str) -> None:
        self.hub = hub
        self.token = token
        self.subject = f"{hub.prefix}.{token}"
        self.peer: str | None = None
        self.error: str | None = None
        self.done = False  # ended, aborted or closed: the hub forgets it
        now = time.monotonic()
        self.heard = now
        self.sent_at = now
        #: silence counts: the peer is known, or this end expects to hear from it (:meth:`expect`)
        self.watch = False
        self._cond: threading.Condition | None = None
        self._event: asyncio.Event | None = None

    # made at first use: an offer answered whole (most requests) never needs them
    @property
    def cond(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _MAKING:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(threading.Lock())
        return cond

    @property
    def event(self) -> asyncio.Event:
        """Set on every change a loop-side waiter may want (used on the loop only)."""
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
        return event

    def _wake(self) -> None:
        """Under ``cond``: wake waiters on both sides (loop side via the loop)."""
        self.cond.notify_all()
        if self._event is not None:
            self.hub.call(self._event.set)

    def _send(self, frame: bytes) -> None:
        """``frame`` to the peer (from any thread; in order)."""
        self.hub.call(self._send_now, frame)

    def _send_now(self, frame: bytes) -> None:
        if self.peer is not None:
            self.sent_at = time.monotonic()
            self.hub.send(self.peer, frame, self.subject)

    def _met(self, peer: str) -> None:
        self.peer = peer
        self.watch = True

    def expect(self) -> None:
        """From now on, hearing nothing from the peer for the silence window aborts the stream, even
        before the peer has said where it is (it may have died before its first frame)."""
        self.heard = time.monotonic()
        self.watch = True

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Abort: wake every waiter with :class:`StreamError`, tell the peer (once)."""
        with self.cond:
            if self.done:
                return
            self.error = reason
            self.done = True
            self._wake()
        if tell_peer:
            self._send(abort_frame(reason))
        self.hub.forget(self)

    def abort(self, reason: str) -> None:
        self.fail(reason)

    def _check(self) -> None:
        if self.error is not None:
            raise StreamError(self.error)

    # the hub's, on the loop
    def on_frame(self, kind: bytes, number: int, payload: bytes, reply: str) -> None:
        raise NotImplementedError

    def keepalive(self) -> None:
        raise NotImplementedError


class Receiver(_End):
    """The receiving end: ``read`` chunks in order until None (the end)."""

    def __init__(self, hub: StreamHub, token: str, window: int) -> None:
        super().__init__(hub, token)
        self.window = window
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.consumed = 0  # bytes handed to the reader
        self.granted = window  # cumulative offset the sender may send up to
        self.received = 0
        self.seq = 0
        self.ended = False

    def offer(self) -> dict[str, Any]:
        """For an RPC's arguments: the sender may send ``window`` bytes here at once."""
        return {"to": self.subject, "window": self.window}

    def accept(self, source: str) -> None:
        """Answer a sender's offer: grant the window (the sender now knows where to send)."""
        self._met(source)
        self._send(credit_frame(self.granted))

    def on_frame(self, kind: bytes, number: int, payload: bytes, reply: str) -> None:
        if self.peer is None and reply:
            self._met(reply)
        if kind == DATA:
            with self.cond:
                if number != self.seq or self.ended:
                    why = f"data frame {number} out of order (expected {self.seq})"
                elif self.received + len(payload) > self.granted:
                    why = f"the sender passed its credit ({self.received + len(payload)} > {self.granted})"
                else:
                    why = ""
                    self.seq += 1
                    self.received += len(payload)
                    if payload:
                        self.chunks.append(payload)
                        self.buffered += len(payload)
                        self._wake()
            if why:
                self.fail(why)
        elif kind == END:
            with self.cond:
                why = "" if number == self.seq else f"the stream ended after {number} frames, {self.seq} came"
                if not why:
                    self.ended = True
                    self.done = True
                    self._wake()
            if why:
                self.fail(why)
            else:
                self.hub.forget(self)
        elif kind == ABORT:
            self.fail(payload.decode("utf-8", "replace") or "aborted by the sender", tell_peer=False)

    def keepalive(self) -> None:
        self._send(credit_frame(self.granted))

    def _took(self, n: int) -> None:
        """Under ``cond``: ``n`` bytes went to the reader; grant more once half the window is free."""
        self.consumed += n
        if not self.ended and self.consumed + self.window - self.granted >= self.window // 2:
            self.granted = self.consumed + self.window
            self._send(credit_frame(self.granted))

    def _take(self, most: int) -> bytes:
        chunk = self.chunks.popleft()
        if len(chunk) > most:
            self.chunks.appendleft(chunk[most:])
            chunk = chunk[:most]
        self.buffered -= len(chunk)
        self._took(len(chunk))
        return chunk

    async def read(self, most: int = 1 << 30) -> bytes | None:
        """The next bytes (at most ``most``), or None at the end. Raises :class:`StreamError`."""
        while True:
            with self.cond:
                if self.chunks:
                    return self._take(most)
                if self.ended:
                    return None
                self._check()
                self.event.clear()
            await self.event.wait()

    def read_blocking(self, most: int, deadline: float | None = None) -> bytes | None:
        """``read`` from a thread that is not the loop's; ``deadline`` (monotonic) bounds the wait."""
        with self.cond:
            while True:
                if self.chunks:
                    return self._take(most)
                if self.ended:
                    return None
                self._check()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no body bytes came before the deadline")
                self.cond.wait(left if left is not None else 1.0)

    def ready(self) -> bool:
        """Whether a read would not wait."""
        return bool(self.chunks) or self.ended or self.error is not None

    def close(self) -> None:
        """The reader wants no more: a stream not at its end is aborted (the sender stops)."""
        if not self.done:
            self.fail("the receiver closed the stream")

    def withdraw(self) -> None:
        """An offer the other end answered without using (a response sent whole): forgotten quietly,
        unless a sender did start on it (then it is aborted, as :meth:`close`)."""
        if self.done:
            return
        if self.peer is None and not self.received:
            self.done = True
            self.hub.forget(self)
            return
        self.close()


class Sender(_End):
    """The sending end: ``write`` bytes (waiting for credit), then ``end`` (or ``abort``)."""

    def __init__(self, hub: StreamHub, token: str) -> None:
        super().__init__(hub, token)
        self.allowed = 0  # cumulative offset granted
        self.sent = 0
        self.seq = 0
        self.ended = False

    def offer(self) -> dict[str, Any]:
        """For an RPC's arguments: the receiver announces itself with a credit frame."""
        return {"from": self.subject}

    def attach(self, offer: Any) -> None:
        """Send to a receiver's offer (``{"to", "window"}``). Raises ValueError for anything else."""
        got = read_offer(offer)
        if not isinstance(got, tuple):
            raise ValueError(f"not a receiver's stream offer: {offer!r:.200}")
        peer, self.allowed = got
        self._met(peer)

    @property
    def started(self) -> bool:
        """Whether any byte has gone to a receiver (a request is then no longer safe to send again)."""
        return self.seq > 0

    def on_frame(self, kind: bytes, number: int, payload: bytes, reply: str) -> None:
        if kind == CREDIT:
            with self.cond:
                if self.peer is None:
                    if not reply:
                        return
                    self._met(reply)
                elif reply and reply != self.peer:  # another receiver (a second attempt): not ours
                    self.hub.send(reply, abort_frame("this stream has another receiver"), self.subject)
                    return
                if number > self.allowed:
                    self.allowed = number
                    self._wake()
        elif kind == ABORT:
            if reply and self.peer is not None and reply != self.peer:
                return
            self.fail(payload.decode("utf-8", "replace") or "aborted by the receiver", tell_peer=False)

    def keepalive(self) -> None:
        self._send(PING_FRAME)

    def _room(self) -> int:
        return self.allowed - self.sent if self.peer is not None else 0

    def _put(self, piece: bytes | memoryview) -> None:
        """Under ``cond``, with room for ``piece``: send it."""
        self.sent += len(piece)
        frame = data_frame(self.seq, piece)
        self.seq += 1
        self._send(frame)

    async def write(self, data: bytes | memoryview) -> None:
        """Send ``data``, waiting for credit as needed. Raises :class:`StreamError`."""
        view = memoryview(data)
        while view:
            with self.cond:
                self._check()
                if self.ended:
                    raise StreamError("write after the end")
                room = min(self._room(), CHUNK, self.hub.chunk)
                if room > 0:
                    self._put(view[:room])
                    view = view[room:]
                    continue
                self.event.clear()
            await self.event.wait()

    def write_blocking(self, data: bytes | memoryview, deadline: float | None = None) -> None:
        """``write`` from a thread that is not the loop's; ``deadline`` (monotonic) bounds the wait."""
        view = memoryview(data)
        with self.cond:
            while view:
                self._check()
                if self.ended:
                    raise StreamError("write after the end")
                room = min(self._room(), CHUNK, self.hub.chunk)
                if room > 0:
                    self._put(view[:room])
                    view = view[room:]
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("the receiver took no more bytes before the deadline")
                self.cond.wait(left if left is not None else 1.0)

    def writable(self) -> int:
        """Bytes a write would send at once."""
        return max(0, self._room()) if self.error is None else 0

    def end(self) -> None:
        """The last byte was written (from the loop or a thread)."""
        with self.cond:
            self._check()
            if self.ended:
                return
            self.ended = True
            self.done = True
            seq = self.seq
        self.hub.call(self._finish, seq)

    def _finish(self, seq: int) -> None:
        if self.peer is None:  # nobody took it: nothing to end
            self.hub.forget(self)
            return
        self._send_now(end_frame(seq))
        self.hub.forget(self)


class StreamHub:
    """One process's stream ends on one NATS connection (see the module doc)."""

    def __init__(self, nc: Any, lattice: str, *, process: str | None = None, keepalive_s: float = KEEPALIVE_S,
                 silence_s: float = SILENCE_S) -> None:
        self.nc = nc
        self.prefix = stream_prefix(lattice, process or uuid.uuid4().hex[:20])
        self.keepalive_s = keepalive_s
        self.silence_s = silence_s
        self.ends: dict[str, _End] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._sub: Any = None
        self._tokens = itertools.count(1)
        self._outbox: deque[tuple[str, bytes, str]] = deque()
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._drain: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.closed = False
        max_payload = int(getattr(nc, "max_payload", 0) or 0)
        #: the data frames' payload, within one NATS message
        self.chunk = min(CHUNK, max_payload - 64) if max_payload > 1024 else CHUNK

    async def start(self) -> StreamHub:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._sub = await self.nc.subscribe(self.prefix + ".*", cb=self._on_msg, pending_msgs_limit=65536)
        await self.nc.flush()  # the server knows the subscription before any offer names it
        return self

    async def close(self, reason: str = "the process is closing") -> None:
        """Abort every open end (their peers are told), stop listening."""
        self.closed = True
        for end in list(self.ends.values()):
            end.fail(reason)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._drain is not None:
            await asyncio.wait([self._drain], timeout=2.0)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # closed connection: nothing to undo
                pass
            self._sub = None

    def receiver(self, window: int = DEFAULT_WINDOW) -> Receiver:
        end = Receiver(self, str(next(self._tokens)), max(window, 1))
        self._add(end)
        return end

    def sender(self) -> Sender:
        end = Sender(self, str(next(self._tokens)))
        self._add(end)
        return end

    def _add(self, end: _End) -> None:
        if self.closed:
            raise StreamError("the stream hub is closed")
        self.ends[end.token] = end
        self.call(self._arm_ticker)

    def forget(self, end: _End) -> None:
        if self.ends.pop(end.token, None) is not None and end.error is not None:
            self._gone[end.token] = end.error  # a late frame from a peer that never heard of it is answered
            if len(self._gone) > _GONE_KEPT:
                self._gone.popitem(last=False)

    # --- the loop side ----------------------------------------------------------------

    def call(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the hub's loop: now when called there, else soon (in order)."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            assert self.loop is not None, "the stream hub is not started"
            self.loop.call_soon_threadsafe(fn, *args)

    def send(self, subject: str, frame: bytes, reply: str) -> None:
        """On the loop: publish in order (one drain task owns the outbox)."""
        self._outbox.append((subject, frame, reply))
        if self._drain is None:
            assert self.loop is not None
            self._drain = self.loop.create_task(self._drain_outbox())

    async def _drain_outbox(self) -> None:
        try:
            while self._outbox:
                subject, frame, reply = self._outbox.popleft()
                try:
                    await self.nc.publish(subject, frame, reply=reply)
                except Exception as exc:  # closed or reconnecting with a full buffer: its end goes silent
                    log.debug("stream frame to %s lost: %r", subject, exc)
        finally:
            self._drain = None

    async def _on_msg(self, msg: Any) -> None:
        token = msg.subject[len(self.prefix) + 1:]
        end = self.ends.get(token)
        if end is None:  # a stream already over: late frames are dropped (an aborted one's peer is told)
            reason = self._gone.get(token)
            if reason is not None and msg.reply and msg.data[:1] != ABORT:
                self.send(msg.reply, abort_frame(reason), f"{self.prefix}.{token}")
            return
        try:
            kind, number, payload = parse(msg.data)
        except FrameError as exc:
            if msg.headers and msg.headers.get("Status") == "503":  # NATS: nobody listens there any more
                end.fail("the other end of the stream is gone", tell_peer=False)
            else:
                end.fail(str(exc))
            return
        end.heard = time.monotonic()
        if kind != ABORT:
            end.on_frame(kind, number, payload, msg.reply)
        else:
            end.on_frame(ABORT, 0, payload, msg.reply)

    def _arm_ticker(self) -> None:
        if self._ticker is None and self.loop is not None and not self.closed:
            self._ticker = self.loop.call_later(self.keepalive_s, self._tick)

    def _tick(self) -> None:
        """Every ``keepalive_s`` while ends are open: keepalives to peers, silence noticed."""
        self._ticker = None
        if not self.ends:
            return
        now = time.monotonic()
        for end in list(self.ends.values()):
            if end.watch and now - end.heard > self.silence_s:
                end.fail(f"the other end of the stream went silent for {self.silence_s:.1f} s")
            elif end.peer is not None and now - end.sent_at >= self.keepalive_s * 0.9:
                end.keepalive()
        self._arm_ticker()

