"""Which toolchain made a component: its top-level ``producers`` section (``processed-by``).

Read when a component is loaded (``LoadedComponent.tools``). A ``wasi:http`` component built by
componentize-js serves its requests through StarlingMonkey's ``fetch`` event, which answers one
request per instance: a second request on the same instance fails inside the guest
("FetchEvent#respondWith can't be called twice on the same event",
bytecodealliance/StarlingMonkey#247) and the handler returns without setting its response. The
invoker therefore never reuses such a component's instances (:func:`one_request_per_instance`),
whatever its reuse policy says, and logs why once.

Only the component's own top-level sections are walked (a few dozen, each skipped by its
size), so a 12 MiB file costs a few small reads; a file that is not a component, or has no
such section, has no producers.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

__all__ = ["ONE_REQUEST_TOOLS", "one_request_per_instance", "processed_by"]

#: ``processed-by`` names of toolchains whose wasi:http components answer one request per instance
ONE_REQUEST_TOOLS = frozenset({"ComponentizeJS"})
_MAGIC = b"\x00asm"
_CUSTOM = 0


def _leb(f: BinaryIO) -> int | None:
    out = shift = 0
    for _ in range(10):
        b = f.read(1)
        if not b:
            return None
        out |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return out
        shift += 7
    return None


def _name(data: bytes, pos: int) -> tuple[str, int] | None:
    f = io.BytesIO(data[pos:])
    n = _leb(f)
    if n is None:
        return None
    start = pos + f.tell()
    if start + n > len(data):
        return None
    return data[start:start + n].decode("utf-8", "replace"), start + n


def _producers(data: bytes) -> dict[str, list[str]]:
    """The fields of a ``producers`` section's payload: field name -> value names."""
    f = io.BytesIO(data)
    fields: dict[str, list[str]] = {}
    count = _leb(f)
    pos = f.tell()
    for _ in range(count or 0):
        got = _name(data, pos)
        if got is None:
            break
        field, pos = got
        g = io.BytesIO(data[pos:])
        values = _leb(g)
        pos += g.tell()
        for _ in range(values or 0):
            value = _name(data, pos)
            if value is None:
                return fields
            version = _name(data, value[1])
            if version is None:
                return fields
            fields.setdefault(field, []).append(value[0])
            pos = version[1]
    return fields


def processed_by(source: bytes | Path) -> frozenset[str]:
    """The ``processed-by`` tools of the component's top-level ``producers`` section (empty when
    it has none, or is no component)."""
    if isinstance(source, (bytes, bytearray)):
        return _walk(io.BytesIO(source))
    try:
        with open(source, "rb") as f:
            return _walk(f)
    except OSError:
        return frozenset()


def _walk(f: BinaryIO) -> frozenset[str]:
    head = f.read(8)
    if len(head) != 8 or head[:4] != _MAGIC or head[6:8] != b"\x01\x00":  # a component (layer 1)
        return frozenset()
    tools: set[str] = set()
    while True:
        kind = f.read(1)
        if not kind:
            return frozenset(tools)
        size = _leb(f)
        if size is None:
            return frozenset(tools)
        if kind[0] != _CUSTOM or size > 1 << 20:
            f.seek(size, io.SEEK_CUR)
            continue
        start = f.tell()
        n = _leb(f)
        if n is None or f.read(n) != b"producers":  # another custom section: skipped unread
            f.seek(start + size)
            continue
        tools.update(_producers(f.read(size - (f.tell() - start))).get("processed-by", []))


def one_request_per_instance(tools: frozenset[str]) -> str | None:
    """Why a wasi:http component made with ``tools`` must get a fresh instance per request (None: it
    need not)."""
    found = sorted(tools & ONE_REQUEST_TOOLS)
    if not found:
        return None
    return (f"made with {found[0]} (StarlingMonkey's fetch event answers one request per instance, "
            "bytecodealliance/StarlingMonkey#247)")
