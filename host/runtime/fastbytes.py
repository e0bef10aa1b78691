"""A bulk path for ``list<u8>`` through wasmtime-py.

wasmtime-py converts a ``list<u8>`` element by element: each byte becomes a
32-byte ``wasmtime_component_val_t`` built in Python, about 2–3.5 µs a byte (a
1 MiB HTTP body took ~3.5 s). The C layout is a plain array of those structs,
so the whole array can be written and read with two slice assignments at C
speed. The patch checks the struct layout first and leaves wasmtime-py alone
when it is not the one this code was written for.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types

log = logging.getLogger(__name__)

_VAL = ffi.wasmtime_component_val_t
_STRIDE = ctypes.sizeof(_VAL)
_KIND_OFF = _VAL.kind.offset
_VALUE_OFF = _VAL.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value

_original_to_c = _types.ListType.convert_to_c
_original_from_c = _types.ListType.convert_from_c
_applied = False


def _to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    if not self._is_bytes():
        return _original_to_c(self, store, val, ptr)
    if not isinstance(val, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes value")
    data = bytes(val)
    n = len(data)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, n)
    if n:
        buf = bytearray(n * _STRIDE)
        buf[_KIND_OFF::_STRIDE] = bytes((_U8,)) * n
        buf[_VALUE_OFF::_STRIDE] = data
        ctypes.memmove(raw.data, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


def _from_c(self: Any, c: Any) -> Any:
    if not self._is_bytes():
        return _original_from_c(self, c)
    assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
    try:
        n = c.of.record.size
        if not n:
            return b""
        raw = ctypes.string_at(c.of.tuple.data, n * _STRIDE)
        return raw[_VALUE_OFF::_STRIDE]
    finally:
        ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))


def _layout_ok() -> bool:
    return _STRIDE >= 16 and _KIND_OFF == 0 and ctypes.sizeof(_VAL.kind.size * ctypes.c_char) == 1 \
        and _VALUE_OFF >= 1 and hasattr(_types.ListType, "_is_bytes")


def apply() -> bool:
    """Install the bulk path (idempotent). Returns whether it is active."""
    global _applied
    if _applied:
        return True
    if not _layout_ok():
        log.warning("wasmtime-py component value layout not recognised; list<u8> stays per-element")
        return False
    _types.ListType.convert_to_c = _to_c  # type: ignore[method-assign]
    _types.ListType.convert_from_c = _from_c  # type: ignore[method-assign]
    _applied = True
    return True
