"""Two corrections to wasmtime-py's component value conversion, applied at import.

1. A bulk path for ``list<u8>``.

wasmtime-py converts a ``list<u8>`` element by element: each byte becomes a
32-byte ``wasmtime_component_val_t`` built in Python, about 2–3.5 µs a byte (a
1 MiB HTTP body took ~3.5 s). The C layout is a plain array of those structs,
so the whole array can be written and read with two slice assignments at C
speed. The patch checks the struct layout first and leaves wasmtime-py alone
when it is not the one this code was written for.

2. The case order of *untagged* variants when lowering. wasmtime-py passes a
variant, option or result untagged when its cases' Python classes do not
overlap, counting a payload-less case as ``object``; but it then lowers by
trying the cases in order with ``isinstance``, and a case whose classes include
``object`` (an ``option<…>`` inside, say) accepts anything. So
``result<option<list<u8>>, string>`` could not carry ``err("x")``: the string
was tried as the ``ok`` option first. Here the cases that cannot match
everything are tried first; the order is the one
:func:`host.runtime.codec` uses to decide the case of an untagged value.
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


def _matches_anything(ty: Any) -> bool:
    if ty is None:
        return False  # a payload-less case matches only None
    classes: set[type] = set()
    ty.add_classes(classes)
    return object in classes


def untagged_order(cases: list[Any]) -> list[Any]:
    """Cases in the order an untagged value is matched against them."""
    return sorted(cases, key=lambda c: _matches_anything(c[1]))


def _lower(self: Any, store: Any, val: Any) -> Any:
    tagged = self._tagged()
    if tagged and not isinstance(val, _types.Variant):
        raise TypeError("expected Variant type")
    cases = self._cases() if tagged else untagged_order(self._cases())
    for name, ty in cases:
        if tagged:
            if name != val.tag:
                continue
        elif ty is None:
            if val is not None:
                continue
        else:
            classes: set[type] = set()
            ty.add_classes(classes)
            if not isinstance(val, tuple(classes)):
                continue
        if ty is None:
            return (name, None)
        raw = ffi.wasmtime_component_val_t()
        ty.convert_to_c(store, val.payload if tagged else val, ctypes.pointer(raw))
        return (name, ffi.wasmtime_component_val_new(ctypes.byref(raw)))
    raise ValueError("value not valid for this variant")


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
    """Install both corrections (idempotent). Returns whether the bulk byte path is active."""
    global _applied
    if _applied:
        return True
    if hasattr(_types, "VariantLikeType") and hasattr(_types.VariantLikeType, "_lower"):
        _types.VariantLikeType._lower = _lower  # type: ignore[method-assign]
    if not _layout_ok():
        log.warning("wasmtime-py component value layout not recognised; list<u8> stays per-element")
        return False
    _types.ListType.convert_to_c = _to_c  # type: ignore[method-assign]
    _types.ListType.convert_from_c = _from_c  # type: ignore[method-assign]
    _applied = True
    return True
