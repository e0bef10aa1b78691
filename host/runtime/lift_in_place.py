"""Lifting a call's result straight to its plain form: the eighth correction to wasmtime-py
(see :mod:`trellis.host.runtime.wasmtime_patches` and :mod:`.lower_in_place`).

wasmtime-py lifts a result from wasmtime's C structs into its own Python values (a
``Record`` object per record, a ctypes view per element, a C call to free each string
and list as it goes), and the codec (:func:`trellis.host.runtime.codec.to_plain`) then
turns those into the plain form (dicts, lists, ``bytes``). For the types whose plain form
needs no choice (records, tuples, lists, strings, ``list<u8>``, numbers, ``bool``, ``char``)
a *reader*, built once and kept on the type, reads the C value directly into that plain
form: the bytes of each container's elements are copied once (``ctypes.string_at``) and
unpacked with ``struct``; the whole tree is freed with one ``wasmtime_component_val_delete``
afterwards. What comes out is what ``to_plain(ty, convert_from_c(value))`` gives: a record
as a dict in field order, a tuple as a list, ``list<u8>`` as ``bytes``.

Types with variants, options, results, enums, flags or resources keep the two-step path
(their plain form names cases; resources have effects). ``TRELLIS_LOWER_IN_PLACE=0``
turns this off as well as the lowering (one switch for both corrections).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types as T

from . import lower_in_place

#: reads the value whose slot starts at ``off`` in ``buf`` (bytes copied from C memory)
Reader = Callable[[bytes, int], Any]

_READER = "_trellis_reader"
_STRIDE = 32  # checked by lower_in_place's layout check, which :func:`active` requires
_VOFF = 8
_ENTRY = ctypes.sizeof(ffi.wasmtime_component_valrecord_entry_t)
_ENTRY_VAL = int(ffi.wasmtime_component_valrecord_entry_t.val.offset)
_VEC = struct.Struct("<QQ")  # (size, data) of a byte vector, list, tuple or record
_read_vec = _VEC.unpack_from
_string_at = ctypes.string_at

_NUMBERS = {T.S8: "b", T.U8: "B", T.S16: "h", T.U16: "H", T.S32: "i", T.U32: "I", T.S64: "q", T.U64: "Q",
            T.F32: "f", T.F64: "d", T.Bool: "?"}


def reader(ty: Any) -> Reader | None:
    """``ty``'s reader, or None when its value must be lifted by wasmtime-py and the codec."""
    d = ty.__dict__
    try:
        found: Reader | None = d[_READER]
    except KeyError:
        found = d[_READER] = _build(ty)
    return found


def _build(ty: Any) -> Reader | None:
    fmt = _NUMBERS.get(type(ty))
    if fmt is not None:
        unpack = struct.Struct("<" + fmt).unpack_from

        def number(buf: bytes, off: int) -> Any:
            return unpack(buf, off + _VOFF)[0]
        return number
    if isinstance(ty, T.Char):
        unpack_u32 = struct.Struct("<I").unpack_from

        def char(buf: bytes, off: int) -> str:
            return chr(unpack_u32(buf, off + _VOFF)[0])
        return char
    if isinstance(ty, T.String):
        return _string
    if isinstance(ty, T.ListType):
        return _bytes if ty._is_bytes() else _list(ty)
    if isinstance(ty, T.TupleType):
        return _tuple(ty)
    if isinstance(ty, T.RecordType):
        return _record(ty)
    return None  # variants, options, results, enums, flags, resources, ...


def _string(buf: bytes, off: int) -> str:
    size, data = _read_vec(buf, off + _VOFF)
    return _string_at(data, size).decode("utf-8") if size else ""


def _bytes(buf: bytes, off: int) -> bytes:
    n, data = _read_vec(buf, off + _VOFF)
    return _string_at(data, n * _STRIDE)[_VOFF::_STRIDE] if n else b""


def _list(ty: Any) -> Reader | None:
    el = reader(ty.element)
    if el is None:
        return None

    def lst(buf: bytes, off: int) -> list[Any]:
        n, data = _read_vec(buf, off + _VOFF)
        if not n:
            return []
        items = _string_at(data, n * _STRIDE)
        return [el(items, o) for o in range(0, n * _STRIDE, _STRIDE)]
    return lst


def _tuple(ty: Any) -> Reader | None:
    els = [reader(t) for t in ty.elements]
    if any(e is None for e in els):
        return None
    at = [(i * _STRIDE, e) for i, e in enumerate(els)]
    size = len(els) * _STRIDE

    def tup(buf: bytes, off: int) -> list[Any]:
        _, data = _read_vec(buf, off + _VOFF)
        items = _string_at(data, size)
        return [e(items, o) for o, e in at]  # type: ignore[misc]  # no None left: checked above
    return tup


def _record(ty: Any) -> Reader | None:
    fields = [(name, reader(t)) for name, t in ty.fields]
    if any(r is None for _, r in fields):
        return None
    at = [(name, i * _ENTRY + _ENTRY_VAL, r) for i, (name, r) in enumerate(fields)]
    size = len(fields) * _ENTRY

    def record(buf: bytes, off: int) -> dict[str, Any]:
        _, data = _read_vec(buf, off + _VOFF)
        entries = _string_at(data, size)
        return {name: r(entries, o) for name, o, r in at}  # type: ignore[misc]  # no None left: checked above
    return record


def lift_root(read: Reader, value: Any) -> Any:
    """The plain form of ``value`` (a ``wasmtime_component_val_t`` the call filled), which is
    freed, whatever happens."""
    addr = ctypes.addressof(value)
    try:
        return read(_string_at(addr, _STRIDE), 0)
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(value))


def active() -> bool:
    """Whether results are lifted here (with the lowering's switch and layout check)."""
    return lower_in_place.active()
