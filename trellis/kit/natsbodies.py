"""HTTP bodies over byte streams: a :class:`~trellis.kit.bodies.BodySource` that reads a NATS
:class:`~trellis.kit.natsstream.Receiver`, a :class:`~trellis.kit.bodies.BodySink` that writes a
:class:`~trellis.kit.natsstream.Sender` (for the thread running the Wasm; see ``bodies.py``).

Credit is the backpressure: a sink's capacity is what the receiver granted, so a guest writing
faster than the far side reads waits in ``blocking-write``/``check-write``; a source holds at most
its receiver's window. A broken stream (the peer aborted, died or went silent) is a
:class:`~trellis.kit.bodies.BodyError` with the stream's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trellis.interfaces.bytestream import StreamError

from .bodies import BodyError
from .natsstream import Receiver, Sender

__all__ = ["ReceiverSource", "SenderSink"]


class ReceiverSource:
    """A body arriving on a byte stream (after ``first``, the bytes that came with its head)."""

    __slots__ = ("rx", "first")

    def __init__(self, rx: Receiver, first: bytes = b"") -> None:
        self.rx = rx
        self.first = first

    def read(self, most: int) -> bytes | None:
        if self.first:
            piece, self.first = self.first[:most], self.first[most:]
            return piece
        rx = self.rx
        if not rx.ready():
            return b""
        try:
            return rx.read_blocking(most, time.monotonic())
        except StreamError as exc:
            raise BodyError(str(exc)) from None
        except TimeoutError:
            return b""

    def ready(self) -> bool:
        return bool(self.first) or self.rx.ready()

    def wait(self, timeout: float | None) -> bool:
        rx = self.rx
        deadline = None if timeout is None else time.monotonic() + timeout
        with rx.cond:
            while not self.ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                rx.cond.wait(min(left, 1.0) if left is not None else 1.0)
        return True

    def close(self) -> None:
        """Nobody reads further: a stream not at its end is aborted (its sender stops)."""
        self.rx.close()


class SenderSink:
    """A body sent on a byte stream as it is written; ``deadline()`` (monotonic, or None) bounds how
    long a write waits for the far side's credit."""

    __slots__ = ("tx", "deadline")

    def __init__(self, tx: Sender, deadline: Callable[[], float | None] = lambda: None) -> None:
        self.tx = tx
        self.deadline = deadline

    def capacity(self) -> int:
        tx = self.tx
        if tx.error is not None:
            raise BodyError(tx.error)
        if tx.ended:
            raise BodyError("the body is finished")
        return tx.writable()

    def write(self, data: bytes) -> None:
        try:
            self.tx.write_blocking(data, self.deadline())
        except StreamError as exc:
            raise BodyError(str(exc)) from None
        except TimeoutError:
            self.tx.abort("the writer's deadline passed")
            raise BodyError("the far side took no more of the body before the deadline") from None

    def flushed(self) -> bool:
        return True  # a write returns once its bytes are sent

    def wait(self, timeout: float | None, flushed: bool = False) -> bool:
        tx = self.tx
        deadline = None if timeout is None else time.monotonic() + timeout
        with tx.cond:
            while tx.writable() <= 0 and tx.error is None and not tx.ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                tx.cond.wait(min(left, 1.0) if left is not None else 1.0)
        return True

    def finish(self) -> None:
        try:
            self.tx.end()
        except StreamError:
            pass  # the far side gave up already: it knows

    def abort(self, reason: str) -> None:
        self.tx.abort(reason)
