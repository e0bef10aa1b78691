"""``wasi:io`` (streams, poll, error), the clocks' pollables and the std streams, in the host.

A ``wasi:http`` component's bodies are ``wasi:io`` streams, which wasmtime's own WASI
cannot hand out from the host (its C API makes no ``incoming-request``). So for such a
component the host defines ``wasi:io`` itself, and with it every import whose types
use those resources: ``wasi:cli/stdin|stdout|stderr``, ``wasi:clocks/monotonic-clock``
(its ``subscribe-*`` return pollables), and ``wasi:filesystem``/``wasi:sockets``
(refused: see :mod:`.dispatch`).

An :class:`InputStream` reads from a body *source* and an :class:`OutputStream` writes
to a body *sink* (:mod:`trellis.kit.bodies`): bytes the host already has (a request body
received whole, a response from the http-client) and a collected body (a response sent
when the handler returns, an outgoing request body), or pipes to and from an event loop
(a request body as the connection delivers it, a response written to the client as the
guest writes it: ``handoff_streams.py`` in the worker). ``blocking-*`` calls and
pollables wait on the source or sink, never past the call's deadline (``timeout``), and
never on the event loop (an inline call goes to a Wasm thread first). Every read and
write is bounded (:data:`CHUNK`) so that one call never carries more than a component
call can (``trellis.interfaces.wasm_limits``).

A streamed body that moves (a piece read from a pipe, a piece taken by one) restarts the call's
deadline (:func:`moved`: a wasi:http handler's deadline is an idle budget; the invoker's
``_restarter``); a body held whole does not, so a guest cannot buy time by reading or writing
bytes the host holds, and its std streams never do.
Values are plain (:mod:`trellis.host.runtime.codec`): ``{"ok": v}`` / ``{"err": e}``,
``{"case": payload}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL
from trellis.kit.bodies import BodyError, BodySink, BodySource, BytesSource, CallbackSink, CollectSink

from ..errors import Reroute
from ..imports import CURRENT_CALL, HostResource

#: the most bytes one read returns and one check-write permits (well under one call's bound).
#: 256 KiB: a piece crosses into Wasm as wasmtime's 48-byte value per byte (12 MiB for this one);
#: 1 MiB pieces took a 100 MB transient peak and ~1.8x the CPU to hash a streamed body
CHUNK = min(256 * 1024, MAX_BYTES_PER_CALL)
CLOSED = {"closed": None}
#: body bytes an inline call (on the worker's event loop) may move before it goes to a Wasm thread:
#: bytes cross into and out of Wasm at ~0.25 s per MiB in wasmtime-py, in host code the epoch
#: deadline cannot cut short, and the loop must keep answering
INLINE_BYTES = 64 * 1024


#: bodies the host holds whole: moving them is no sign of a peer's progress
_HELD = (BytesSource, CollectSink, CallbackSink)


def moved() -> None:
    """A streamed body moved: the call's deadline starts again (see the module doc)."""
    ctx = CURRENT_CALL.get()
    if ctx is not None and ctx.progress is not None:
        ctx.progress()


def check_inline(moved: int) -> None:
    """Raise :class:`Reroute` when an inline call would move more than :data:`INLINE_BYTES`."""
    if moved > INLINE_BYTES:
        ctx = CURRENT_CALL.get()
        if ctx is not None and ctx.inline:
            raise Reroute(f"a body past {INLINE_BYTES} bytes", sticky=False)


class IoError:
    """``wasi:io/error.error``: a message for people (and, for HTTP, an ``error-code``)."""

    def __init__(self, message: str, http_code: Any = None) -> None:
        self.message = message
        self.http_code = http_code


def failed(message: str, http_code: Any = None) -> dict[str, Any]:
    """``stream-error.last-operation-failed(error)``."""
    return {"err": {"last-operation-failed": HostResource(IoError(message, http_code))}}


class Pollable:
    """``wasi:io/poll.pollable``: ``ready`` says whether it is; ``wait`` blocks until it is
    (bounded by the call's deadline, which the epoch enforces once back in Wasm)."""

    __slots__ = ("ready", "wait")

    def __init__(self, ready: Callable[[], bool] = lambda: True,
                 wait: Callable[[], None] | None = None) -> None:
        self.ready = ready
        self.wait = wait or (lambda: None)


READY = Pollable()


class OutOfTime(Exception):
    """The guest waited on a clock past the call's deadline (the invoker makes it a ``timeout``)."""


def deadline_pollable(at_ns: int) -> Pollable:
    """Ready at monotonic instant ``at_ns`` (``time.monotonic_ns``). Waiting never outlasts the
    call: past its deadline the call fails (``timeout``); an inline call goes to a Wasm thread."""
    def ready() -> bool:
        return time.monotonic_ns() >= at_ns

    def wait() -> None:
        left = (at_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return
        ctx = CURRENT_CALL.get()
        if ctx is not None and ctx.inline:
            raise Reroute("the guest waits on a clock", sticky=False)
        limit = ctx.deadline if ctx is not None else None
        if limit is not None and time.monotonic() + left > limit:
            time.sleep(max(0.0, limit - time.monotonic()))
            raise OutOfTime(f"the guest waited on a clock past the call's deadline ({left:.3f} s more)")
        time.sleep(left)
    return Pollable(ready, wait)


def _wait(wait: Callable[[float | None], bool], what: str) -> None:
    """Block on ``wait(timeout)`` (a body's), never past the call's deadline and never on the
    event loop (an inline call goes to a Wasm thread first)."""
    ctx = CURRENT_CALL.get()
    if ctx is not None and ctx.inline:
        raise Reroute(f"the guest waits on {what}", sticky=False)
    limit = ctx.deadline if ctx is not None else None
    if wait(None if limit is None else max(0.0, limit - time.monotonic())):
        return
    raise OutOfTime(f"the guest waited on {what} past the call's deadline")


class InputStream:
    """Reads from a :class:`~trellis.kit.bodies.BodySource`; closed at its end. ``on_end``
    (optional) runs once, when the end is read."""

    __slots__ = ("source", "pos", "on_end", "streamed")

    def __init__(self, source: BodySource, on_end: Callable[[], None] | None = None) -> None:
        self.source = source
        self.pos = 0
        self.on_end = on_end
        self.streamed = not isinstance(source, _HELD)

    def read(self, most: int, blocking: bool = False) -> dict[str, Any]:
        n = max(0, min(int(most), CHUNK))
        try:
            piece = self.source.read(n)
            if piece == b"" and blocking and n:
                _wait(self.source.wait, "the request body")
                piece = self.source.read(n)
        except BodyError as exc:
            return failed(str(exc), getattr(exc, "http_code", None))
        if piece is None:
            if self.on_end is not None:
                self.on_end()
                self.on_end = None
            return {"err": CLOSED}
        self.pos += len(piece)
        check_inline(self.pos)
        if piece and self.streamed:
            moved()
        return {"ok": piece}

    def skip(self, most: int, blocking: bool = False) -> dict[str, Any]:
        got = self.read(most, blocking)
        return {"ok": len(got["ok"])} if "ok" in got else got

    def pollable(self) -> Pollable:
        source = self.source
        return Pollable(source.ready, lambda: _wait(source.wait, "the request body"))


class OutputStream:
    """Writes to a :class:`~trellis.kit.bodies.BodySink` (``sink``; a body's may be swapped for
    another while the guest holds the stream: :meth:`attach`)."""

    __slots__ = ("sink", "size", "closed", "what")

    def __init__(self, sink: BodySink, what: str) -> None:
        self.sink = sink
        self.size = 0
        self.closed = False
        self.what = what

    def attach(self, sink: BodySink) -> None:
        """Send what was collected so far to ``sink``, and every write after it."""
        old, self.sink = self.sink, sink
        if isinstance(old, CollectSink):
            for chunk in old.chunks:
                sink.write(chunk)
            old.chunks = []

    def check_write(self) -> dict[str, Any]:
        if self.closed:
            return {"err": CLOSED}
        try:
            return {"ok": min(self.sink.capacity(), CHUNK)}
        except BodyError as exc:
            self.closed = True
            return failed(str(exc))

    def write(self, data: bytes) -> dict[str, Any]:
        if self.closed:
            return {"err": CLOSED}
        self.size += len(data)
        check_inline(self.size)
        try:
            self.sink.write(bytes(data))
        except BodyError as exc:
            self.closed = True
            return failed(str(exc))
        if data and not isinstance(self.sink, _HELD):  # (a body's sink may be swapped for a pipe)
            moved()
        return {"ok": None}

    def blocking_write(self, data: bytes) -> dict[str, Any]:
        """``blocking-write-and-flush``: waits for room first, and until it was handed on."""
        if self.closed:
            return {"err": CLOSED}
        sink = self.sink
        if not sink.flushed():
            _wait(sink.wait, "the response body's reader")
        got = self.write(data)
        if "ok" in got and not sink.flushed():
            return self.blocking_flush()
        return got

    def flush(self) -> dict[str, Any]:
        return {"err": CLOSED} if self.closed else {"ok": None}

    def blocking_flush(self) -> dict[str, Any]:
        if self.closed:
            return {"err": CLOSED}
        sink = self.sink
        if not sink.flushed():
            _wait(lambda timeout: sink.wait(timeout, flushed=True), "the response body's reader")
        try:
            sink.capacity()  # a body that broke meanwhile says so
        except BodyError as exc:
            self.closed = True
            return failed(str(exc))
        return {"ok": None}

    def pollable(self) -> Pollable:
        sink = self.sink

        def ready() -> bool:
            try:
                return self.closed or sink.capacity() > 0
            except BodyError:
                return True
        return Pollable(ready, lambda: _wait(sink.wait, "the response body's reader"))

    def body(self) -> bytes:
        """What a :class:`CollectSink` holds (b"" for any other)."""
        sink = self.sink
        return sink.body() if isinstance(sink, CollectSink) else b""


def _void_sink(data: bytes) -> None:
    return None


# --- the functions, by (unversioned interface, function) ------------------------------------------

Impl = Callable[[list[Any]], Any]


def _blocking_splice(args: list[Any]) -> Any:
    out, src, most = args
    got = src.read(min(int(most), CHUNK), True)
    if "err" in got:
        return got
    wrote = out.blocking_write(got["ok"])
    return wrote if "err" in wrote else {"ok": len(got["ok"])}


def _splice(args: list[Any]) -> Any:
    out, src, most = args
    room = out.check_write()
    if "err" in room:
        return room
    got = src.read(min(int(most), room["ok"]))
    if "err" in got:
        return got
    wrote = out.write(got["ok"])
    return wrote if "err" in wrote else {"ok": len(got["ok"])}


def _poll(args: list[Any]) -> list[int]:
    pollables: list[Pollable] = args[0]
    if not pollables:
        raise ValueError("poll of an empty list")
    ready = [i for i, p in enumerate(pollables) if p.ready()]
    if ready:
        return ready
    pollables[0].wait()  # the first one: bounded, and the guest polls again for the rest
    return [i for i, p in enumerate(pollables) if p.ready()] or [0]


def _block(args: list[Any]) -> None:
    p: Pollable = args[0]
    if not p.ready():
        p.wait()


IO: dict[tuple[str, str], Impl] = {
    ("wasi:io/error", "[method]error.to-debug-string"): lambda a: a[0].message,
    ("wasi:io/poll", "[method]pollable.ready"): lambda a: bool(a[0].ready()),
    ("wasi:io/poll", "[method]pollable.block"): _block,
    ("wasi:io/poll", "poll"): _poll,
    ("wasi:io/streams", "[method]input-stream.read"): lambda a: a[0].read(a[1]),
    ("wasi:io/streams", "[method]input-stream.blocking-read"): lambda a: a[0].read(a[1], True),
    ("wasi:io/streams", "[method]input-stream.skip"): lambda a: a[0].skip(a[1]),
    ("wasi:io/streams", "[method]input-stream.blocking-skip"): lambda a: a[0].skip(a[1], True),
    ("wasi:io/streams", "[method]input-stream.subscribe"): lambda a: HostResource(a[0].pollable()),
    ("wasi:io/streams", "[method]output-stream.check-write"): lambda a: a[0].check_write(),
    ("wasi:io/streams", "[method]output-stream.write"): lambda a: a[0].write(a[1]),
    ("wasi:io/streams", "[method]output-stream.blocking-write-and-flush"): lambda a: a[0].blocking_write(a[1]),
    ("wasi:io/streams", "[method]output-stream.flush"): lambda a: a[0].flush(),
    ("wasi:io/streams", "[method]output-stream.blocking-flush"): lambda a: a[0].blocking_flush(),
    ("wasi:io/streams", "[method]output-stream.subscribe"): lambda a: HostResource(a[0].pollable()),
    ("wasi:io/streams", "[method]output-stream.write-zeroes"): lambda a: a[0].write(bytes(min(int(a[1]), CHUNK))),
    ("wasi:io/streams", "[method]output-stream.blocking-write-zeroes-and-flush"):
        lambda a: a[0].blocking_write(bytes(min(int(a[1]), CHUNK))),
    ("wasi:io/streams", "[method]output-stream.splice"): _splice,
    ("wasi:io/streams", "[method]output-stream.blocking-splice"): _blocking_splice,
    ("wasi:clocks/monotonic-clock", "now"): lambda a: time.monotonic_ns(),
    ("wasi:clocks/monotonic-clock", "resolution"): lambda a: 1,
    ("wasi:clocks/monotonic-clock", "subscribe-instant"): lambda a: HostResource(deadline_pollable(int(a[0]))),
    ("wasi:clocks/monotonic-clock", "subscribe-duration"):
        lambda a: HostResource(deadline_pollable(time.monotonic_ns() + int(a[0]))),
    ("wasi:cli/stdin", "get-stdin"): lambda a: HostResource(InputStream(BytesSource())),
    ("wasi:filesystem/preopens", "get-directories"): lambda a: [],
    ("wasi:filesystem/types", "filesystem-error-code"): lambda a: None,
}


def std_stream(what: str, sink: Callable[[bytes], None] | None) -> HostResource:
    """``get-stdout`` / ``get-stderr``: writes go to ``sink`` (discarded without one)."""
    return HostResource(OutputStream(CallbackSink(sink or _void_sink), what))
