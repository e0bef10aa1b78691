"""Body sources and sinks: what a component's HTTP body streams read from and write to.

A ``wasi:http`` component reads its request body from an ``input-stream`` and writes its
response body to an ``output-stream`` (``host/runtime/wasi_http/io.py``); an outgoing request
the other way round. Those streams do not know where the bytes come from or go: they read
from a :class:`BodySource` and write to a :class:`BodySink`. What is behind one decides
whether a body is buffered or streamed:

* :class:`BytesSource` / :class:`CollectSink`: a body held whole (the request record's
  ``body``; a response collected and sent when the handler returns);
* :class:`PipeSource` / :class:`PipeSink`: a body streamed between an asyncio event loop
  (where the bytes arrive from, or leave to, a socket or NATS) and the thread running the
  Wasm, bounded both ways: a source asks its feeder to pause once more than ``high`` bytes
  wait to be read and to resume below half of it; a sink's writer waits while more than
  ``high`` bytes wait to be sent, or while its owner says the far side is not taking any
  (:meth:`PipeSink.hold` / :meth:`PipeSink.release`, e.g. a transport's
  ``pause_writing``/``resume_writing``).

Threads: a source is fed (``feed``/``end``/``fail``) on its loop and read on any thread;
a sink is written on any thread and its callbacks run on its loop. ``wait`` blocks the
calling thread, so it is never called on the loop that feeds the source (a call running
on that loop must go to a thread first: the Wasm host raises ``Reroute`` there).

A :class:`BodyError` from ``read``/``capacity``/``write`` is a broken body (the client went
away mid-upload, the connection closed under a response): the guest's stream gets
``last-operation-failed`` with its message, not a hang.

:class:`Exchange` is one HTTP request served as streams (its body as it arrives, its response
head and body as the guest gives them), as the worker's HTTP front hands it to the runtime.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["BodyError", "BodySink", "BodySource", "BytesSource", "CallbackSink", "CollectSink", "Exchange",
           "PipeSink", "PipeSource", "DEFAULT_HIGH"]

#: bytes a pipe buffers before its feeder is paused (a source) or its writer waits (a sink)
DEFAULT_HIGH = 1 << 20


class BodyError(Exception):
    """The body is broken: its stream fails with this message."""


class BodySource(Protocol):
    """Where an ``input-stream`` reads from."""

    def read(self, most: int) -> bytes | None:
        """At most ``most`` bytes, without waiting: ``b""`` when none are here yet, ``None`` at the
        end. Raises :class:`BodyError` when the body broke."""

    def ready(self) -> bool:
        """Whether :meth:`read` would not return ``b""`` (bytes, the end, or a failure are here)."""

    def wait(self, timeout: float | None) -> bool:
        """Block this thread until :meth:`ready` (False: ``timeout`` seconds passed first)."""


class BodySink(Protocol):
    """Where an ``output-stream`` writes to."""

    def capacity(self) -> int:
        """Bytes :meth:`write` takes now (0: wait). Raises :class:`BodyError` when the body broke
        (or was finished)."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` (at most what :meth:`capacity` said). Raises :class:`BodyError`."""

    def flushed(self) -> bool:
        """Whether everything written has been handed on (``blocking-flush`` waits for this)."""

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        """Block this thread until :meth:`capacity` is above 0 (or, with ``flushed``, until
        :meth:`flushed`), or the body broke. False: ``timeout`` seconds passed first."""

    def finish(self) -> None:
        """The body is complete (nothing more is written)."""

    def abort(self, reason: str) -> None:
        """The body cannot be completed: the far side must see it broken, never complete."""


class Exchange(Protocol):
    """One HTTP request served as streams (see the module doc)."""

    @property
    def body(self) -> BodySource:
        """The request body, as it arrives."""

    def claim(self) -> bool:
        """True once: the caller that serves the request streams it (a nested call never does)."""

    def start(self, status: int, headers: list[tuple[str, bytes]]) -> BodySink:
        """The response head goes out now; its body is written to the sink returned."""

    @property
    def started(self) -> bool:
        """Whether the head went out (a failure after that cannot be answered with a status)."""


# --- whole bodies -------------------------------------------------------------------------------


class BytesSource:
    """A body that is all here."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self.data = memoryview(data)
        self.pos = 0

    def read(self, most: int) -> bytes | None:
        pos = self.pos
        if pos >= len(self.data):
            return None
        piece = bytes(self.data[pos:pos + max(0, most)])
        self.pos = pos + len(piece)
        return piece

    def ready(self) -> bool:
        return True

    def wait(self, timeout: float | None) -> bool:
        return True


class CollectSink:
    """Keeps what is written (``chunks``), up to ``limit`` bytes; past it, :class:`BodyError`."""

    __slots__ = ("chunks", "size", "limit", "what", "done")

    def __init__(self, limit: int, what: str) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.what = what
        self.done = False

    def capacity(self) -> int:
        if self.done:
            raise BodyError(f"the {self.what} is finished")
        return max(0, self.limit - self.size) or 1  # a write past the limit fails, naming it

    def write(self, data: bytes) -> None:
        if self.done:
            raise BodyError(f"the {self.what} is finished")
        if self.size + len(data) > self.limit:
            self.done = True
            raise BodyError(f"the {self.what} would pass {self.limit} bytes")
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def flushed(self) -> bool:
        return True

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        return True

    def finish(self) -> None:
        self.done = True

    def abort(self, reason: str) -> None:
        self.done = True

    def body(self) -> bytes:
        return b"".join(self.chunks)


class CallbackSink:
    """Hands every write to ``take`` at once (stdout, stderr)."""

    __slots__ = ("take",)

    def __init__(self, take: Callable[[bytes], None]) -> None:
        self.take = take

    def capacity(self) -> int:
        return 1 << 20

    def write(self, data: bytes) -> None:
        self.take(data)

    def flushed(self) -> bool:
        return True

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        return True

    def finish(self) -> None:
        return None

    def abort(self, reason: str) -> None:
        return None


# --- streamed bodies ----------------------------------------------------------------------------


class PipeSource:
    """A body fed on ``loop`` as it arrives, read on a Wasm thread (see the module doc).

    ``pause()``/``resume()`` run on the loop: the feeder stops and starts delivering (e.g. a
    transport's ``pause_reading``/``resume_reading``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pause: Callable[[], None], resume: Callable[[], None],
                 high: int = DEFAULT_HIGH) -> None:
        self.loop = loop
        self._pause, self._resume = pause, resume
        self.high = high
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        #: the most bytes buffered at once (a body never sits here whole)
        self.peak = 0
        #: bytes fed so far
        self.received = 0
        self.ended = False
        self.error: str | None = None
        self._paused = False
        self._resuming = False
        self._cond = threading.Condition(threading.Lock())

    # -- the loop's side --

    def feed(self, data: bytes) -> None:
        if not data or self.ended or self.error is not None:
            return
        with self._cond:
            self._chunks.append(data)
            self.buffered += len(data)
            self.received += len(data)
            self.peak = max(self.peak, self.buffered)
            over = self.buffered > self.high and not self._paused
            if over:
                self._paused = True
            self._cond.notify_all()
        if over:
            self._pause()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        """The body broke (the peer went away): reads fail with ``message`` once the bytes
        already here are read."""
        with self._cond:
            if self.ended or self.error is not None:
                return
            self.error = message
            self._cond.notify_all()

    @property
    def complete(self) -> bool:
        """The whole body is here (ended, nothing read yet or not)."""
        return self.ended

    def whole(self) -> bytes:
        """Everything buffered, taken (for a body that arrived whole with its head)."""
        with self._cond:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self.buffered = 0
        return data

    # -- the reader's side --

    def read(self, most: int) -> bytes | None:
        with self._cond:
            chunks = self._chunks
            if not chunks:
                if self.error is not None:
                    raise BodyError(self.error)
                return None if self.ended else b""
            first = chunks[0]
            if len(first) <= most:
                chunks.popleft()
                piece = first
                if chunks and len(piece) + len(chunks[0]) <= most:  # more small chunks, while they fit:
                    parts, size = [piece], len(piece)  # joined once (not copied again per chunk)
                    while chunks and size + len(chunks[0]) <= most:
                        parts.append(chunks.popleft())
                        size += len(parts[-1])
                    piece = b"".join(parts)
            else:
                piece, chunks[0] = first[:most], first[most:]
            self.buffered -= len(piece)
            resume = self._paused and not self._resuming and self.buffered <= self.high // 2
            if resume:
                self._resuming = True
        if resume:
            self.loop.call_soon_threadsafe(self._on_resume)
        return piece

    def _on_resume(self) -> None:
        with self._cond:
            self._resuming = False
            if not self._paused or self.buffered > self.high // 2:
                return
            self._paused = False
        self._resume()

    def ready(self) -> bool:
        return bool(self._chunks) or self.ended or self.error is not None

    def wait(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(self.ready, timeout)


class PipeSink:
    """A body written on a Wasm thread, sent on ``loop`` (see the module doc).

    On the loop: ``send(chunks)`` takes what was written, in order (several writes at once when
    they queued up); ``done()`` follows the last of them after :meth:`finish`; ``broken(reason)``
    after :meth:`abort`. The owner calls :meth:`hold`/:meth:`release` when the far side stops and
    starts taking bytes, and :meth:`fail` when it is gone.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Callable[[list[bytes]], None],
                 done: Callable[[], None], broken: Callable[[str], None], high: int = DEFAULT_HIGH) -> None:
        self.loop = loop
        self._send, self._done, self._broken = send, done, broken
        self.high = high
        self._queue: list[bytes] = []
        self.pending = 0  # written, not yet sent
        #: bytes written so far
        self.written = 0
        self._scheduled = False
        self._held = False
        self.finished = False
        self.error: str | None = None
        self._end: str | None = None  # "done" / "broken: reason", once queued
        self._cond = threading.Condition(threading.Lock())

    # -- the writer's side --

    def capacity(self) -> int:
        with self._cond:
            if self.error is not None:
                raise BodyError(self.error)
            if self.finished:
                raise BodyError("the body is finished")
            return 0 if self._held else max(0, self.high - self.pending)

    def write(self, data: bytes) -> None:
        if not data:
            if self.error is not None:
                raise BodyError(self.error)
            return
        with self._cond:
            if self.error is not None:
                raise BodyError(self.error)
            if self.finished:
                raise BodyError("the body is finished")
            self._queue.append(data)
            self.pending += len(data)
            self.written += len(data)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.loop.call_soon_threadsafe(self._pump)

    def flushed(self) -> bool:
        return self.error is not None or (self.pending == 0 and not self._held)

    def _writable(self) -> bool:
        return self.error is not None or (not self._held and self.pending < self.high)

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        with self._cond:
            return self._cond.wait_for(self.flushed if flushed else self._writable, timeout)

    def finish(self) -> None:
        self._close("done")

    def abort(self, reason: str) -> None:
        self._close("broken: " + reason)

    def _close(self, end: str) -> None:
        with self._cond:
            if self.finished or self._end is not None:
                return
            self.finished = True
            self._end = end
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.loop.call_soon_threadsafe(self._pump)

    # -- the loop's side --

    def _pump(self) -> None:
        with self._cond:
            queue, self._queue = self._queue, []
            end, self._end = self._end, None
            self._scheduled = False
            failed = self.error is not None
        if not failed:
            if queue:
                self._send(queue)
            if end == "done":
                self._done()
            elif end is not None:
                self._broken(end.removeprefix("broken: "))
        with self._cond:
            self.pending -= sum(map(len, queue))
            self._cond.notify_all()

    def hold(self) -> None:
        """The far side takes no more for now (writers wait)."""
        with self._cond:
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        """The far side is gone: writes fail with ``message``."""
        with self._cond:
            if self.error is None:
                self.error = message
            self._cond.notify_all()
