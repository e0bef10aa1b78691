"""A byte stream over NATS: the contract (subjects, frames, flow control, end and abort).

One sender, one receiver, ordered chunks of bytes, for bodies too large or too slow to travel in
one RPC (an HTTP request body from the front to a worker, a response body back, an outgoing
request's body to the http-client provider and its response body back; docs/http.md). The
implementation is ``trellis/kit/natsstream.py``; this module holds only what both ends must
agree on, as pure functions.

**Subjects.** Each process that streams listens on one wildcard,
``trellis.<lattice>.stream.<process>.*`` (:func:`stream_prefix`); a stream end is the subject
``<prefix>.<token>``. A frame is a NATS message sent to the other end's subject, with the
sender's own end as its reply subject, so that the first frame tells the peer where to answer.

**Opening.** The end that starts an RPC puts an *offer* in its arguments (plain values,
:func:`offer`): a receiver offers ``{"to": SUBJECT, "window": N}`` (the sender may send N bytes at
once, before any credit frame: no round trip); a sender offers ``{"from": SUBJECT}`` (the receiver
announces itself with a credit frame, whose reply subject is where data goes).

**Frames** (the first byte says which; integers big-endian):

====================  =========================================================================
``D`` seq:u32 bytes   data, ``seq`` counting from 0; a gap or a repeat aborts the stream
``E`` seq:u32         the end: ``seq`` data frames were sent
``C`` offset:u64      credit: the sender may send bytes up to this cumulative offset
``P``                 still here (sent by either end after :data:`KEEPALIVE_S` with nothing sent)
``A`` reason:utf-8    abort: the stream failed or was given up; the other end stops at once
====================  =========================================================================

**Flow control.** The receiver grants bytes; the sender never has more than the granted offset
sent, so a receiver holds at most its window (bounded memory), and a fast sender waits for a
slow receiver. A receiver grants again once half its window is consumed.

**Liveness.** An end that hears nothing from its peer for :data:`SILENCE_S` (no frame at all:
each end sends ``P`` or a repeated ``C`` every :data:`KEEPALIVE_S` while idle) presumes it dead
and aborts; an end that knows its peer is gone (its process stops, the call failed) sends ``A``.
So a dead peer is noticed within :data:`SILENCE_S`, and nothing waits forever.
"""

from __future__ import annotations

import struct
from typing import Any

from .subjects import stream_prefix

#: bytes a receiver grants by default (it holds at most this much)
DEFAULT_WINDOW = 2 * 1024 * 1024
#: the largest data frame's payload (also kept under the NATS server's max_payload)
CHUNK = 256 * 1024
#: an end with nothing to send for this long sends a keepalive
KEEPALIVE_S = 0.25
#: an end that hears nothing from its peer for this long aborts the stream
SILENCE_S = 2.0

DATA, END, CREDIT, PING, ABORT = b"D", b"E", b"C", b"P", b"A"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class StreamError(Exception):
    """The stream was aborted (by the peer, by silence, or by this end); the message says why."""


__all__ = ["CHUNK", "DEFAULT_WINDOW", "KEEPALIVE_S", "SILENCE_S", "FrameError", "StreamError", "abort_frame",
           "credit_frame", "data_frame", "end_frame", "offer", "parse", "read_offer", "stream_prefix"]


class FrameError(ValueError):
    """Bytes that are not a frame of this contract."""


# --- frames ------------------------------------------------------------------------------

def data_frame(seq: int, payload: bytes | memoryview) -> bytes:
    return DATA + _U32.pack(seq & 0xFFFFFFFF) + bytes(payload)


def end_frame(seq: int) -> bytes:
    return END + _U32.pack(seq & 0xFFFFFFFF)


def credit_frame(offset: int) -> bytes:
    return CREDIT + _U64.pack(offset)


def abort_frame(reason: str) -> bytes:
    return ABORT + reason.encode("utf-8", "replace")[:1000]


PING_FRAME = PING


def parse(frame: bytes) -> tuple[bytes, int, bytes]:
    """``(kind, number, payload)``: the seq of ``D``/``E``, the offset of ``C``, else 0; the data of
    ``D``, the reason of ``A``, else empty. Raises :class:`FrameError`."""
    kind = frame[:1]
    if kind == DATA and len(frame) >= 5:
        return DATA, _U32.unpack_from(frame, 1)[0], frame[5:]
    if kind == CREDIT and len(frame) == 9:
        return CREDIT, _U64.unpack_from(frame, 1)[0], b""
    if kind == END and len(frame) == 5:
        return END, _U32.unpack_from(frame, 1)[0], b""
    if kind == PING and len(frame) == 1:
        return PING, 0, b""
    if kind == ABORT:
        return ABORT, 0, frame[1:]
    raise FrameError(f"not a stream frame ({len(frame)} bytes, kind {kind!r})")


# --- offers (plain values an RPC carries) ----------------------------------------------------

def offer(*, to: str | None = None, window: int = 0, source: str | None = None) -> dict[str, Any]:
    """A receiver's offer (``to`` its subject, ``window`` bytes granted at once) or a sender's
    (``source`` its subject)."""
    if to is not None:
        return {"to": to, "window": int(window)}
    if source is not None:
        return {"from": source}
    raise ValueError("an offer names its end: to= or source=")


def read_offer(value: Any) -> tuple[str, int] | str | None:
    """``(subject, window)`` for a receiver's offer, ``subject`` for a sender's, None for anything else."""
    if not isinstance(value, dict):
        return None
    to, window, source = value.get("to"), value.get("window"), value.get("from")
    if isinstance(to, str) and to and type(window) is int and window >= 0:
        return to, window
    if isinstance(source, str) and source:
        return source
    return None
