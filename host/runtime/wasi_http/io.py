"""``wasi:io`` (streams, poll, error), the clocks' pollables and the std streams, in the host.

A ``wasi:http`` component's bodies are ``wasi:io`` streams, which wasmtime's own WASI
cannot hand out from the host (its C API makes no ``incoming-request``). So for such a
component the host defines ``wasi:io`` itself, and with it every import whose types
use those resources: ``wasi:cli/stdin|stdout|stderr``, ``wasi:clocks/monotonic-clock``
(its ``subscribe-*`` return pollables), and ``wasi:filesystem``/``wasi:sockets``
(refused: see :mod:`.dispatch`).

Streams here are buffers: an :class:`InputStream` reads from bytes the host already
has (a request body as the HTTP front received it, a response from the http-client),
an :class:`OutputStream` collects what the guest writes (a response body, a request
body, stdout, stderr). Every read and write is bounded (:data:`CHUNK`) so that one
call never carries more than a component call can (``trellis.interfaces.wasm_limits``).
Values are plain (:mod:`trellis.host.runtime.codec`): ``{"ok": v}`` / ``{"err": e}``,
``{"case": payload}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

from ..errors import Reroute
from ..imports import CURRENT_CALL, HostResource

#: the most bytes one read returns and one check-write permits (well under one call's bound)
CHUNK = min(1 << 20, MAX_BYTES_PER_CALL)
CLOSED = {"closed": None}
#: body bytes an inline call (on the worker's event loop) may move before it goes to a Wasm thread:
#: bytes cross into and out of Wasm at ~0.25 s per MiB in wasmtime-py, in host code the epoch
#: deadline cannot cut short, and the loop must keep answering
INLINE_BYTES = 64 * 1024


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


class InputStream:
    """Reads from ``data``; closed at its end. ``fetch`` (optional) fills it first, once
    (a response the host waits for)."""

    __slots__ = ("data", "pos", "on_end", "error")

    def __init__(self, data: bytes | bytearray | memoryview = b"", on_end: Callable[[], None] | None = None) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.on_end = on_end
        self.error: str | None = None

    def read(self, most: int) -> dict[str, Any]:
        if self.error is not None:
            return failed(self.error)
        if self.pos >= len(self.data):
            if self.on_end is not None:
                self.on_end()
                self.on_end = None
            return {"err": CLOSED}
        n = max(0, min(int(most), CHUNK, len(self.data) - self.pos))
        check_inline(self.pos + n)
        piece = bytes(self.data[self.pos:self.pos + n])
        self.pos += len(piece)
        return {"ok": piece}

    def skip(self, most: int) -> dict[str, Any]:
        if self.pos >= len(self.data):
            return {"err": CLOSED}
        n = max(0, min(int(most), len(self.data) - self.pos))
        self.pos += n
        return {"ok": n}


class OutputStream:
    """Collects writes in ``chunks`` up to ``limit`` bytes; ``sink`` (optional) takes each
    write instead (stdout, stderr)."""

    __slots__ = ("chunks", "size", "limit", "closed", "sink", "what")

    def __init__(self, limit: int, what: str, sink: Callable[[bytes], None] | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.closed = False
        self.sink = sink
        self.what = what

    def check_write(self) -> dict[str, Any]:
        if self.closed:
            return {"err": CLOSED}
        return {"ok": CHUNK}

    def write(self, data: bytes) -> dict[str, Any]:
        if self.closed:
            return {"err": CLOSED}
        if self.sink is not None:
            self.sink(bytes(data))
            return {"ok": None}
        check_inline(self.size + len(data))
        if self.size + len(data) > self.limit:
            self.closed = True
            return failed(f"the {self.what} would pass {self.limit} bytes")
        if data:
            self.chunks.append(bytes(data))
            self.size += len(data)
        return {"ok": None}

    def body(self) -> bytes:
        return b"".join(self.chunks)


def _void_sink(data: bytes) -> None:
    return None


# --- the functions, by (unversioned interface, function) ------------------------------------------

Impl = Callable[[list[Any]], Any]


def _blocking_splice(args: list[Any]) -> Any:
    out, src, most = args
    got = src.read(min(int(most), CHUNK))
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
    ("wasi:io/streams", "[method]input-stream.blocking-read"): lambda a: a[0].read(a[1]),
    ("wasi:io/streams", "[method]input-stream.skip"): lambda a: a[0].skip(a[1]),
    ("wasi:io/streams", "[method]input-stream.blocking-skip"): lambda a: a[0].skip(a[1]),
    ("wasi:io/streams", "[method]input-stream.subscribe"): lambda a: HostResource(READY),
    ("wasi:io/streams", "[method]output-stream.check-write"): lambda a: a[0].check_write(),
    ("wasi:io/streams", "[method]output-stream.write"): lambda a: a[0].write(a[1]),
    ("wasi:io/streams", "[method]output-stream.blocking-write-and-flush"): lambda a: a[0].write(a[1]),
    ("wasi:io/streams", "[method]output-stream.flush"): lambda a: {"err": CLOSED} if a[0].closed else {"ok": None},
    ("wasi:io/streams", "[method]output-stream.blocking-flush"):
        lambda a: {"err": CLOSED} if a[0].closed else {"ok": None},
    ("wasi:io/streams", "[method]output-stream.subscribe"): lambda a: HostResource(READY),
    ("wasi:io/streams", "[method]output-stream.write-zeroes"): lambda a: a[0].write(bytes(min(int(a[1]), CHUNK))),
    ("wasi:io/streams", "[method]output-stream.blocking-write-zeroes-and-flush"):
        lambda a: a[0].write(bytes(min(int(a[1]), CHUNK))),
    ("wasi:io/streams", "[method]output-stream.splice"): _blocking_splice,
    ("wasi:io/streams", "[method]output-stream.blocking-splice"): _blocking_splice,
    ("wasi:clocks/monotonic-clock", "now"): lambda a: time.monotonic_ns(),
    ("wasi:clocks/monotonic-clock", "resolution"): lambda a: 1,
    ("wasi:clocks/monotonic-clock", "subscribe-instant"): lambda a: HostResource(deadline_pollable(int(a[0]))),
    ("wasi:clocks/monotonic-clock", "subscribe-duration"):
        lambda a: HostResource(deadline_pollable(time.monotonic_ns() + int(a[0]))),
    ("wasi:cli/stdin", "get-stdin"): lambda a: HostResource(InputStream()),
    ("wasi:filesystem/preopens", "get-directories"): lambda a: [],
    ("wasi:filesystem/types", "filesystem-error-code"): lambda a: None,
}


def std_stream(what: str, sink: Callable[[bytes], None] | None) -> HostResource:
    """``get-stdout`` / ``get-stderr``: writes go to ``sink`` (discarded without one)."""
    return HostResource(OutputStream(0, what, sink or _void_sink))
