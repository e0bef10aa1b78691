"""The RPC envelope: every invocation on the lattice is one msgpack map.

Pure functions only: encoding, decoding and validation, no I/O. Values inside
``args``/``result`` are the plain forms of WIT values (see docs/runtime.md):
records are maps keyed by WIT field names, ``list<u8>`` is bytes, results and
variants are one-key maps.

Request (``Invocation``)::

    {"v": 1, "id": "…", "source": "…", "target": "…", "interface": "ns:pkg/iface",
     "function": "name", "args": [...], "deadline_ms": <unix ms>, "link": "default",
     "trace": {"traceparent": "…"}, "attempt": 1}

Reply (``Reply``), any number of ``{"v":1,"id":…,"progress":true}`` keep-alives
followed by exactly one of::

    {"v": 1, "id": "…", "ok": true, "result": <plain>}
    {"v": 1, "id": "…", "ok": false, "error": {"code": "…", "message": "…", "kind": "…"}}
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack

VERSION = 1
MAX_FRAME = 8 * 1024 * 1024  # bytes; NATS's default max payload is 1 MiB, servers may raise it


class EnvelopeError(ValueError):
    """A frame that is not a valid envelope; the message says what is wrong."""


@dataclass
class Invocation:
    target: str
    interface: str
    function: str
    args: list[Any] = field(default_factory=list)
    source: str = "cli"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
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
    def decode(cls, frame: bytes) -> "Invocation":
        m = _unpack(frame)
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


@dataclass
class RemoteError:
    code: str
    message: str
    kind: str = ""

    def to_plain(self) -> dict[str, str]:
        d = {"code": self.code, "message": self.message}
        if self.kind:
            d["kind"] = self.kind
        return d


@dataclass
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
        m: dict[str, Any] = {"v": VERSION, "id": self.id}
        if self.progress:
            m["progress"] = True
            if self.no_retry:
                m["nr"] = True
        elif self.ok:
            m["ok"] = True
            m["result"] = self.result
        else:
            assert self.error is not None
            m["ok"] = False
            m["error"] = self.error.to_plain()
        if self.served_by:
            m["by"] = self.served_by
        return _pack(m)

    @classmethod
    def decode(cls, frame: bytes) -> "Reply":
        m = _unpack(frame)
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
    def failure(cls, inv_id: str, code: str, message: str, kind: str = "") -> "Reply":
        return cls(id=inv_id, ok=False, error=RemoteError(code, message, kind))


def progress_frame(inv_id: str, served_by: str = "", no_retry: bool = False) -> bytes:
    return Reply(id=inv_id, progress=True, served_by=served_by, no_retry=no_retry).encode()


# --- helpers -------------------------------------------------------------------

def _pack(m: dict[str, Any]) -> bytes:
    try:
        return msgpack.packb(m, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"value cannot be encoded: {exc}") from None


def _unpack(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_FRAME:
        raise EnvelopeError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        m = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise EnvelopeError(f"frame is not valid msgpack: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(m, dict):
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
