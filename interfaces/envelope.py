"""The RPC envelope: every invocation on the lattice is one msgpack map.

Pure functions only: encoding, decoding and validation, no I/O. Values inside
``args``/``result`` are the plain forms of WIT values (see docs/runtime.md):
records are maps keyed by WIT field names, ``list<u8>`` is bytes, results and
variants are one-key maps.

Request (``Invocation``)::

    {"v": 1, "id": "…", "source": "…", "target": "…", "interface": "ns:pkg/iface",
     "function": "name", "args": [...], "deadline_ms": <unix ms>, "link": "default",
     "trace": {"traceparent": "…"}, "attempt": 1}

``link``, ``trace`` and ``attempt`` may be left out (defaults: ``"default"``,
``{}``, ``1``). ``id`` is opaque to receivers; Trellis writes 32 hex digits, a
random prefix per client (or process) and a counter (:class:`IdSource`).

Reply (``Reply``), any number of ``{"v":1,"id":…,"progress":true}`` keep-alives
(``"nr": true`` on one that says an at-most-once call has started) followed by
exactly one of (each with ``"by": "<host/worker>"`` when the server names itself)::

    {"v": 1, "id": "…", "ok": true, "result": <plain>}
    {"v": 1, "id": "…", "ok": false, "error": {"code": "…", "message": "…", "kind": "…"}}

Maps, not arrays, and the keys above in this order: a map costs ~1.5 µs more
to decode than an array of the same fields, but it is the format every
Trellis process speaks; changing it would need a version 2 that both sides
accept during an upgrade. Decoding checks every field's type in one pass and
falls back to field-by-field checks (which say what is wrong) only for a bad
frame; encoding reuses one msgpack ``Packer`` per thread.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import msgpack

VERSION = 1
#: the largest frame read (bytes). A reply larger than the NATS server's max payload (1 MiB by
#: default) crosses NATS in parts (:data:`PART_HEADER`); a request must fit in one message.
MAX_FRAME = 64 * 1024 * 1024
#: room kept in a frame or NATS message for the envelope around a body (headers, ids, ...)
ENVELOPE_ROOM = 64 * 1024
#: the largest body (HTTP request or response) a frame carries
MAX_BODY = MAX_FRAME - ENVELOPE_ROOM
#: NATS header on each part of a reply sent in several messages: "i/n", 1-based, in order
PART_HEADER = "Trellis-Part"


class EnvelopeError(ValueError):
    """A frame that is not a valid envelope; the message says what is wrong."""


def join_part(parts: list[bytes] | None, part: str, data: bytes) -> tuple[list[bytes] | None, bytes | None]:
    """One NATS message of a reply sent in parts (its :data:`PART_HEADER` is ``part``), given
    the parts so far: ``(parts, None)`` while more are to come, ``(None, frame)`` with the last.
    Raises :class:`EnvelopeError` for a part out of order or a frame past :data:`MAX_FRAME`."""
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise EnvelopeError(f"bad {PART_HEADER} header {part!r}") from None
    parts = parts if parts is not None else []
    if not 1 <= i <= n or i != len(parts) + 1:
        raise EnvelopeError(f"reply part {part} out of order (after {len(parts)} parts)")
    if sum(map(len, parts)) + len(data) > MAX_FRAME:
        raise EnvelopeError(f"reply in parts exceeds the {MAX_FRAME}-byte limit")
    parts.append(data)
    if i < n:
        return parts, None
    return None, b"".join(parts)


# --- invocation ids -------------------------------------------------------------

class IdSource:
    """Invocation ids: 32 hex digits, a random 64-bit prefix and a 64-bit counter.

    As unique as ``uuid4().hex`` for practical purposes (prefixes are drawn from
    the OS's random source, one per source), at a tenth of the cost: no system
    call per id.
    """

    __slots__ = ("prefix", "_count", "__weakref__")

    def __init__(self) -> None:
        self.reseed()
        _sources.add(self)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self._count):016x}"


#: every source, drawn again in a forked child: a worker forked from a pre-loaded parent must not
#: repeat its parent's (or a sibling's) ids, which a callee takes as the same call (``call_memory``)
_sources: weakref.WeakSet[IdSource] = weakref.WeakSet()
_ids = IdSource()


def _new_prefix_after_fork() -> None:
    for source in list(_sources):
        source.reseed()


os.register_at_fork(after_in_child=_new_prefix_after_fork)


def new_id() -> str:
    """A fresh invocation id (process-wide source; :class:`IdSource` for one of your own)."""
    return _ids()


@dataclass(slots=True)
class Invocation:
    target: str
    interface: str
    function: str
    args: list[Any] = field(default_factory=list)
    source: str = "cli"
    id: str = field(default_factory=new_id)
    deadline_ms: int = 0
    link: str = "default"
    trace: dict[str, str] = field(default_factory=dict)
    attempt: int = 1

    @property
    def operation(self) -> str:
        return f"{self.interface}.{self.function}" if self.interface else self.function

    def remaining_s(self, now_ms: int | None = None) -> float:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return (self.deadline_ms - now) / 1000.0

    def encode(self) -> bytes:
        return _pack({
            "v": VERSION, "id": self.id, "source": self.source, "target": self.target,
            "interface": self.interface, "function": self.function, "args": self.args,
            "deadline_ms": self.deadline_ms, "link": self.link, "trace": self.trace,
            "attempt": self.attempt,
        })

    @classmethod
    def decode(cls, frame: bytes) -> Invocation:
        m = _unpack(frame)
        # fast path: every field present (or defaulted) with its exact type, as every sender writes them
        g = m.get
        iid, source, target, interface, function, args, deadline_ms = (
            g("id"), g("source"), g("target"), g("interface"), g("function"), g("args"), g("deadline_ms"))
        link, trace, attempt = g("link", "default"), g("trace", _NO_TRACE), g("attempt", 1)
        if (g("v") == VERSION and type(iid) is str and type(source) is str and type(target) is str
                and type(interface) is str and type(function) is str and function and type(args) is list
                and type(deadline_ms) is int and type(link) is str and type(trace) is dict
                and type(attempt) is int):
            return cls(target, interface, function, args, source, iid, deadline_ms, link,
                       {} if trace is _NO_TRACE else trace, attempt)
        # anything else: the field-by-field checks, which say what is wrong
        _check_version(m)
        return cls(
            id=_field(m, "id", str),
            source=_field(m, "source", str),
            target=_field(m, "target", str),
            interface=_field(m, "interface", str),
            function=_field(m, "function", str, nonempty=True),
            args=_field(m, "args", list),
            deadline_ms=_field(m, "deadline_ms", int),
            link=_field(m, "link", str, default="default"),
            trace=_field(m, "trace", dict, default={}),
            attempt=_field(m, "attempt", int, default=1),
        )


_NO_TRACE: dict[str, str] = {}  # sentinel: never handed out


@dataclass(slots=True)
class RemoteError:
    code: str
    message: str
    kind: str = ""

    def to_plain(self) -> dict[str, str]:
        d = {"code": self.code, "message": self.message}
        if self.kind:
            d["kind"] = self.kind
        return d


@dataclass(slots=True)
class Reply:
    id: str
    ok: bool = True
    result: Any = None
    error: RemoteError | None = None
    progress: bool = False
    served_by: str = ""
    #: on a progress frame: the call has started and must not be sent again if it is lost
    no_retry: bool = False

    def encode(self) -> bytes:
        if self.progress:
            return progress_frame(self.id, self.served_by, self.no_retry)
        if self.ok:
            return ok_frame(self.id, self.result, self.served_by)
        assert self.error is not None
        m: dict[str, Any] = {"v": VERSION, "id": self.id, "ok": False, "error": self.error.to_plain()}
        if self.served_by:
            m["by"] = self.served_by
        return _pack(m)

    @classmethod
    def decode(cls, frame: bytes) -> Reply:
        m = _unpack(frame)
        g = m.get
        rid, by, ok = g("id"), g("by", ""), g("ok")
        if g("v") == VERSION and type(rid) is str and type(by) is str:  # fast path
            if ok is True and "progress" not in m:
                return cls(rid, True, g("result"), None, False, by)
            if g("progress") is True:
                return cls(rid, True, None, None, True, by, bool(g("nr")))
        _check_version(m)
        rid = _field(m, "id", str)
        by = _field(m, "by", str, default="")
        if m.get("progress"):
            return cls(id=rid, progress=True, served_by=by, no_retry=bool(m.get("nr")))
        if _field(m, "ok", bool):
            return cls(id=rid, ok=True, result=m.get("result"), served_by=by)
        err = _field(m, "error", dict)
        return cls(
            id=rid, ok=False, served_by=by,
            error=RemoteError(code=str(err.get("code", "internal")), message=str(err.get("message", "")),
                              kind=str(err.get("kind", ""))),
        )

    @classmethod
    def failure(cls, inv_id: str, code: str, message: str, kind: str = "") -> Reply:
        return cls(id=inv_id, ok=False, error=RemoteError(code, message, kind))


def ok_frame(inv_id: str, result: Any, served_by: str = "") -> bytes:
    """The encoded success reply, without building a :class:`Reply` (the server's common path)."""
    if served_by:
        return _pack({"v": VERSION, "id": inv_id, "ok": True, "result": result, "by": served_by})
    return _pack({"v": VERSION, "id": inv_id, "ok": True, "result": result})


def progress_frame(inv_id: str, served_by: str = "", no_retry: bool = False) -> bytes:
    m: dict[str, Any] = {"v": VERSION, "id": inv_id, "progress": True}
    if no_retry:
        m["nr"] = True
    if served_by:
        m["by"] = served_by
    return _pack(m)


# --- helpers -------------------------------------------------------------------

_tls = threading.local()  # one msgpack Packer per thread: packb() builds a new one per call
_KEEP_PACKER_BELOW = 1 << 20  # a packer that grew its buffer past this is dropped, not kept


def _pack(m: dict[str, Any]) -> bytes:
    packer = getattr(_tls, "packer", None)
    if packer is None:
        packer = _tls.packer = msgpack.Packer(use_bin_type=True)
    try:
        frame: bytes = packer.pack(m)  # resets itself when it raises
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"value cannot be encoded: {exc}") from None
    if len(frame) >= _KEEP_PACKER_BELOW:
        _tls.packer = None
    return frame


def _unpack(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_FRAME:
        raise EnvelopeError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        m = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise EnvelopeError(f"frame is not valid msgpack: {exc.__class__.__name__}: {exc}") from None
    if type(m) is not dict:
        raise EnvelopeError(f"frame must be a msgpack map, got {type(m).__name__}")
    return m


def _check_version(m: dict[str, Any]) -> None:
    v = m.get("v")
    if v != VERSION:
        raise EnvelopeError(f"unsupported envelope version {v!r} (this side speaks {VERSION})")


_MISSING = object()


def _field(m: dict[str, Any], key: str, typ: type, default: Any = _MISSING, nonempty: bool = False) -> Any:
    if key not in m:
        if default is _MISSING:
            raise EnvelopeError(f"envelope field {key!r} is missing")
        return default
    value = m[key]
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise EnvelopeError(f"envelope field {key!r} must be {typ.__name__}, got {type(value).__name__}")
    if nonempty and not value:
        raise EnvelopeError(f"envelope field {key!r} must not be empty")
    return value
