"""A ``wasi:http`` component's outgoing request, through the linked http-client provider, streamed.

The guest calls ``outgoing-handler.handle(request, options)`` and gets a future; it may write the
request body before or after, and reads the response body from an ``input-stream``. Here:

* **Small requests pay nothing new.** The body is collected; when the guest waits for the
  response with its body finished and within one NATS message (:func:`spill_bytes`), the request
  goes in one call (``wasi:http/outgoing-handler.send``) with its ``content-length``, as before.
* **A large or unfinished body streams** (chunked upstream, as any HTTP client sends a body of
  unknown length). Once the body passes :func:`spill_bytes`, or the guest
  waits for the response before finishing it, the call starts on a helper thread with what was
  written so far and a sender offer (``request["body-stream"]``, ``interfaces/bytestream.py``);
  from then on each write goes to the provider as it is written (waiting for its credit: a
  bounded amount is in flight), and ``outgoing-body.finish`` ends the stream.
* **The response streams back.** Every call offers a receiver (``request["response-stream"]``):
  the provider answers a small response whole, a larger one with its head and the start of its
  body, then the rest on the stream, which the guest's ``incoming-body`` stream reads.
* **Timeouts.** The ``request-options`` durations go to the provider
  (``connect-timeout-ms``, ``first-byte-timeout-ms``, ``between-bytes-timeout-ms``), which maps
  what happened to the spec's ``error-code`` cases; a body stream that breaks off mid-way fails the
  guest's read with an ``error`` whose ``http-error-code`` is the case the provider named.

The streams need the worker's :class:`~trellis.kit.natsstream.StreamHub` (:func:`use_hub`); without
one (a runtime used alone), bodies are collected and sent whole, as before.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from trellis.interfaces.envelope import ENVELOPE_ROOM
from trellis.kit.bodies import BodyError, CollectSink
from trellis.kit.natsbodies import ReceiverSource, SenderSink
from trellis.kit.natsstream import Receiver, Sender, StreamHub

from ..errors import Reroute
from ..imports import CURRENT_CALL
from .io import OutOfTime

__all__ = ["SPILL_BYTES", "OutgoingCall", "SpillSink", "spill_bytes", "use_hub"]

#: a request body past this many bytes streams to the provider when the NATS message limit is unknown
SPILL_BYTES = 256 * 1024
#: the helper threads that wait for a streamed request's response head (its body is written meanwhile)
_EXECUTOR = ThreadPoolExecutor(32, thread_name_prefix="wasi-http-out")
_hub: StreamHub | None = None

Rename = Callable[[str, Any], Any]


def use_hub(hub: StreamHub | None) -> None:
    """The worker's stream hub (None: bodies go whole)."""
    global _hub
    _hub = hub


def current_hub() -> StreamHub | None:
    return _hub


def spill_bytes() -> int:
    """A request body past this streams: what one NATS message carries with its envelope (a body
    that fits goes whole, with its length, as it always did)."""
    max_payload = int(getattr(_hub.nc, "max_payload", 0) or 0) if _hub is not None else 0
    return max(SPILL_BYTES, max_payload - ENVELOPE_ROOM) if max_payload else SPILL_BYTES


def call_deadline() -> float | None:
    """The running call's deadline (monotonic), if any."""
    ctx = CURRENT_CALL.get()
    return ctx.deadline if ctx is not None else None


def _not_inline(what: str) -> None:
    """Waiting on the lattice cannot happen on the worker's loop: run the call on a Wasm thread."""
    ctx = CURRENT_CALL.get()
    if ctx is not None and ctx.inline:
        raise Reroute(what)


def code_of(reason: str, rename: Rename) -> Any:
    """The error-code a stream's abort reason names first (``"connection-read-timeout: …"``)."""
    case, sep, rest = reason.partition(": ")
    if sep and case and case.replace("-", "").isalpha() and case.islower():
        return rename(case, rest[:500] if case == "internal-error" else None)
    return rename("internal-error", reason[:500])


class CodedSource(ReceiverSource):
    """A response body on its way; a break carries the error-code the provider named."""

    __slots__ = ("rename",)

    def __init__(self, rx: Receiver, first: bytes, rename: Rename) -> None:
        super().__init__(rx, first)
        self.rename = rename

    def read(self, most: int) -> bytes | None:
        try:
            return super().read(most)
        except BodyError as exc:
            raise CodedError(f"the response body broke off: {exc}", code_of(str(exc), self.rename)) from None


class CodedError(BodyError):
    """A broken body, with the ``error-code`` (plain) ``http-error-code`` gives for it."""

    def __init__(self, message: str, http_code: Any) -> None:
        super().__init__(message)
        self.http_code = http_code


class SpillSink:
    """An outgoing request's body: collected, until it passes :func:`spill_bytes` (or the guest
    waits for the response first); then streamed to the provider (a :class:`SenderSink`)."""

    __slots__ = ("call", "collect", "target", "dropping")

    def __init__(self, call: OutgoingCall, collect: CollectSink) -> None:
        self.call = call
        self.collect = collect
        self.target: SenderSink | None = None
        #: the provider refused the request before taking its body: the rest is dropped, and the
        #: response future says why (as when a connection is refused before the body is sent)
        self.dropping = False

    def capacity(self) -> int:
        if self.dropping:
            return 1 << 20
        try:
            return self.target.capacity() if self.target is not None else self.collect.capacity()
        except BodyError:
            if self._refused():
                return 1 << 20
            raise

    def _refused(self) -> bool:
        """The stream broke because the call failed: wait for its answer; True when it is an error."""
        future = self.call.future
        if future is None:
            return False
        try:
            result = future.result(timeout=2.0)
        except Exception:
            return False
        self.dropping = isinstance(result, dict) and "err" in result
        return self.dropping

    def write(self, data: bytes) -> None:
        if self.dropping:
            return
        if self.target is not None:
            try:
                self.target.write(data)
            except BodyError:
                if not self._refused():
                    raise
            return
        self.collect.write(data)
        if _hub is not None and self.collect.size > spill_bytes() and self.call.future is None:
            try:
                self.call.stream()
            except BodyError:
                if not self._refused():
                    raise

    def flushed(self) -> bool:
        return self.target.flushed() if self.target is not None else True

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        return self.target.wait(timeout, flushed) if self.target is not None and not self.dropping else True

    def finish(self) -> None:
        self.call.finished = True
        if self.target is not None and not self.dropping:
            self.target.finish()
        else:
            self.collect.finish()

    def abort(self, reason: str) -> None:
        if self.target is not None:
            self.target.abort(reason)


class OutgoingCall:
    """One outgoing request (see the module doc). ``send(request, options)`` makes the call to the
    provider (on any thread) and returns ``{"ok": response}`` or ``{"err": code}``, plain, in the
    guest's case names; ``rename(case, payload)`` spells a lower-case case the guest's way."""

    def __init__(self, request: dict[str, Any], options: dict[str, Any], body: CollectSink | None,
                 finished: bool, send: Callable[[dict[str, Any], dict[str, Any]], Any], rename: Rename) -> None:
        self.request = request
        self.options = options
        self.send = send
        self.rename = rename
        self.result: Any = None
        self.future: Future[Any] | None = None
        self.sender: Sender | None = None
        self.receiver: Receiver | None = None
        self.finished = finished or body is None
        #: where the guest's body writes go (None: it has none, or it was finished before ``handle``)
        self.sink: SpillSink | None = None if self.finished or body is None else SpillSink(self, body)
        self.collected = body

    # --- the request ------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        request = dict(self.request)
        request["body"] = self.collected.body() if self.collected is not None else b""
        if self.collected is not None:
            self.collected.chunks = []
        if _hub is not None:
            self.receiver = _hub.receiver()
            request["response-stream"] = self.receiver.offer()
        return request

    def stream(self) -> None:
        """Start the call now, the body so far with it and the rest on a stream as it is written."""
        _not_inline("a streamed outgoing request")
        assert _hub is not None and self.future is None
        request = self._request()
        so_far = b""
        if not self.finished and self.sink is not None:
            so_far, request["body"] = request["body"], b""  # all of it on the stream: no message limit
            self.sender = _hub.sender()
            request["body-stream"] = self.sender.offer()
            self.sink.target = SenderSink(self.sender, call_deadline)
        self.future = _EXECUTOR.submit(contextvars.copy_context().run, self._run, request)
        if so_far and self.sink is not None and self.sink.target is not None:
            self.sink.target.write(so_far)  # once the provider takes the stream (its credit)

    def _run(self, request: dict[str, Any]) -> Any:
        try:
            return self.send(request, self.options)
        except BaseException:
            if self.sender is not None:
                self.sender.abort("the outgoing request failed")
            raise

    # --- the response -----------------------------------------------------------------

    def ready(self) -> bool:
        if self.result is not None:
            return True
        if self.future is None:
            if not self.finished:
                if _hub is None:
                    self.result = {"err": self.rename("internal-error", "the request body was not finished "
                                                                        "before waiting for the response")}
                    return True
                self.stream()  # the guest waits with its body unfinished: what there is goes now
            else:
                self.result = self._settle(self.send(self._request(), self.options))
                return True
        assert self.future is not None
        if self.future.done():
            self.result = self._settle(self.future.result())
            return True
        return False

    def wait(self) -> None:
        if self.ready():
            return
        assert self.future is not None
        _not_inline("an outgoing request")
        deadline = call_deadline()
        try:
            result = self.future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise OutOfTime("no response before the call's deadline") from None
        self.result = self._settle(result)

    def _settle(self, result: Any) -> Any:
        """The call's result, a streamed response's body ready for the guest to read."""
        rx = self.receiver
        if rx is None:
            return result
        ok = result.get("ok") if isinstance(result, dict) else None
        if isinstance(ok, dict) and ok.get("stream"):
            rx.expect()
            ok["body"] = CodedSource(rx, bytes(ok.get("body") or b""), self.rename)
        else:
            rx.withdraw()  # answered whole (or not at all): nothing comes on it
        return result

    def close(self) -> None:
        """The guest's call is over: streams still open are given up."""
        if self.sender is not None and not self.sender.ended:
            self.sender.abort("the component's call ended before its request body did")
        if self.receiver is not None:
            self.receiver.close()
