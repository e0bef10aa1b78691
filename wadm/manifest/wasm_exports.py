"""What a WebAssembly component exports, read from its bytes without compiling it.

`trellis app validate` uses this to check that a link's interfaces are ones its
target component exports (a ``trellis:http`` component linked as ``wasi:http`` is
refused before anything is deployed). Only the component's own top-level export
section is read (binary format of the component model, ``Binary.md``), so this
takes microseconds where compiling takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the component-model preamble: magic, version 0x0d, layer 1
_MAGIC = b"\x00asm"
_COMPONENT_LAYER = b"\x01\x00"
_EXPORT_SECTION = 11
_SORT_INSTANCE = 0x05
_SORT_FUNC = 0x01


class NotAComponent(ValueError):
    """The bytes are not a component this reader understands."""


@dataclass(frozen=True)
class ComponentExports:
    interfaces: tuple[str, ...]
    """Exported instances, as named: ``ns:pkg/iface@1.0.0``."""
    functions: tuple[str, ...]
    """Functions the world exports directly."""

    def unversioned(self) -> set[str]:
        return {name.partition("@")[0] for name in self.interfaces}


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise NotAComponent("unexpected end of section")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise NotAComponent("LEB128 number too long")

    def s33(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result
            if shift > 35:
                raise NotAComponent("LEB128 number too long")

    def name(self) -> str:
        n = self.u32()
        if self.pos + n > self.end:
            raise NotAComponent("name runs past its section")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")


def _extern_desc(r: _Reader) -> None:
    kind = r.byte()
    if kind == 0x00:  # core module: 0x11 typeidx
        r.byte()
        r.u32()
    elif kind in (0x01, 0x04, 0x05):
        r.u32()
    elif kind == 0x02:  # value bound
        if r.byte() == 0x00:
            r.u32()
        else:
            r.s33()
    elif kind == 0x03:  # type bound
        if r.byte() == 0x00:
            r.u32()
    else:
        raise NotAComponent(f"unknown extern descriptor 0x{kind:02x}")


def component_exports(wasm: bytes) -> ComponentExports:
    """The top-level exports of a component binary; raises `NotAComponent`."""
    if wasm[:4] != _MAGIC:
        raise NotAComponent("not a WebAssembly binary")
    if wasm[6:8] != _COMPONENT_LAYER:
        raise NotAComponent("a core WebAssembly module, not a component")
    interfaces: list[str] = []
    functions: list[str] = []
    r = _Reader(wasm, 8)
    while r.pos < len(wasm):
        section = r.byte()
        size = r.u32()
        start = r.pos
        if start + size > len(wasm):
            raise NotAComponent("a section runs past the end of the file")
        if section == _EXPORT_SECTION:
            s = _Reader(wasm, start, start + size)
            for _ in range(s.u32()):
                tag = s.byte()
                if tag not in (0x00, 0x01):
                    raise NotAComponent(f"unknown export name form 0x{tag:02x}")
                name = s.name()
                if tag == 0x01:  # a version suffix follows
                    s.name()
                sort = s.byte()
                if sort == 0x00:  # core sort
                    s.byte()
                s.u32()
                if s.byte() == 0x01:
                    _extern_desc(s)
                if sort == _SORT_INSTANCE:
                    interfaces.append(name)
                elif sort == _SORT_FUNC:
                    functions.append(name)
        r.pos = start + size
    return ComponentExports(tuple(interfaces), tuple(functions))
