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

Variants, options, results and enums are read the same way, into the codec's plain form of
them: a variant or a result as ``{case: payload}`` (``None`` for a case without one), an
option as ``None`` or its payload (``{"some": payload}`` when the payload is itself an
option), an enum as its case's name. The case is the one wasmtime wrote (its name, or the
option's pointer, or the result's ``is_ok``), never guessed from the payload's Python class.
Types with flags or resources keep the two-step path (resources have effects).
``TRELLIS_LOWER_IN_PLACE=0`` turns this off as well as the lowering (one switch for both
corrections).

Where the C extension of :mod:`.native_values` is available, a type's reader is its C one
(the same plain form, read without ``struct`` or ``ctypes``); these are the fallback.

An import's arguments are read the same way (:func:`read_args`, used by
``wasmtime_patches``' host-function callback): the guest's values become the plain values
the host function wants without wasmtime-py's objects in between.
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
_VARIANT = struct.Struct("<QQQ")  # a variant's case name (size, data) and its payload's pointer (or 0)
_read_variant = _VARIANT.unpack_from
_PTR = struct.Struct("<Q")
_read_ptr = _PTR.unpack_from
_RESULT_VAL = int(ffi.wasmtime_component_valresult_t.val.offset)  # type: ignore[attr-defined]  # a ctypes field: its offset, after the bool is_ok
_string_at = ctypes.string_at

_NUMBERS = {T.S8: "b", T.U8: "B", T.S16: "h", T.U16: "H", T.S32: "i", T.U32: "I", T.S64: "q", T.U64: "Q",
            T.F32: "f", T.F64: "d", T.Bool: "?"}


def reader(ty: Any) -> Reader | None:
    """``ty``'s reader, or None when its value must be lifted by wasmtime-py and the codec."""
    d = ty.__dict__
    try:
        found: Reader | None = d[_READER]
    except KeyError:
        from . import native_values  # (it imports call, which imports this module)

        found = d[_READER] = native_values.reader(ty) or _build(ty)
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
    if isinstance(ty, T.EnumType):
        return _string  # the case's name, laid out as a string is
    if isinstance(ty, T.VariantType):
        return _variant(ty)
    if isinstance(ty, T.OptionType):
        return _option(ty)
    if isinstance(ty, T.ResultType):
        return _result(ty)
    return None  # flags, resources, ...


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


def _payload(read: Reader | None, ptr: int) -> Any:
    """A case's payload: the value at ``ptr`` (wasmtime allocated it on its own), or None."""
    return None if read is None or not ptr else read(_string_at(ptr, _STRIDE), 0)


def _variant(ty: Any) -> Reader | None:
    cases: dict[bytes, tuple[str, Reader | None]] = {}
    for name, case_ty in ty.cases:
        read = None if case_ty is None else reader(case_ty)
        if case_ty is not None and read is None:
            return None
        cases[name.encode()] = (name, read)

    def variant(buf: bytes, off: int) -> dict[str, Any]:
        size, data, ptr = _read_variant(buf, off + _VOFF)
        name, read = cases[_string_at(data, size)]
        return {name: _payload(read, ptr)}
    return variant


def _option(ty: Any) -> Reader | None:
    payload_ty = ty.payload
    read = reader(payload_ty)
    if read is None:
        return None
    nested = isinstance(payload_ty, T.OptionType)  # the codec's plain form: {"some": ...} tells them apart

    def option(buf: bytes, off: int) -> Any:
        (ptr,) = _read_ptr(buf, off + _VOFF)
        if not ptr:
            return None
        inner = read(_string_at(ptr, _STRIDE), 0)
        return {"some": inner} if nested else inner
    return option


def _result(ty: Any) -> Reader | None:
    ok_ty, err_ty = ty.ok, ty.err
    ok = None if ok_ty is None else reader(ok_ty)
    err = None if err_ty is None else reader(err_ty)
    if (ok_ty is not None and ok is None) or (err_ty is not None and err is None):
        return None

    def result(buf: bytes, off: int) -> dict[str, Any]:
        (ptr,) = _read_ptr(buf, off + _VOFF + _RESULT_VAL)
        if buf[off + _VOFF]:
            return {"ok": _payload(ok, ptr)}
        return {"err": _payload(err, ptr)}
    return result


def lift_root(read: Reader, value: Any) -> Any:
    """The plain form of ``value`` (a ``wasmtime_component_val_t`` the call filled), which is
    freed, whatever happens."""
    addr = ctypes.addressof(value)
    try:
        return read(_string_at(addr, _STRIDE), 0)
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(value))


def read_args(reads: list[Reader], args: Any, n: int) -> list[Any]:
    """The plain forms of the ``n`` values at ``args`` (a host function's arguments), each then
    freed and left a ``bool`` (what wasmtime-py's conversion leaves of a value it took)."""
    addr = ctypes.cast(args, ctypes.c_void_p).value or 0
    size = n * _STRIDE
    buf = _string_at(addr, size)
    try:
        return [read(buf, i * _STRIDE) for i, read in enumerate(reads)]
    finally:
        for i in range(n):
            _val_delete(_cast(addr + i * _STRIDE, _VAL_P))
        _memset(addr, 0, size)  # kind 0 is bool: nothing left to free, whoever looks again


_val_delete = ffi.wasmtime_component_val_delete
_cast = ctypes.cast
_VAL_P = ctypes.POINTER(ffi.wasmtime_component_val_t)
_memset = ctypes.PyDLL(None).memset  # keeping the GIL (ctypes.memset releases it)
_memset.restype = ctypes.c_void_p
_memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def active() -> bool:
    """Whether results are lifted here (with the lowering's switch and layout check)."""
    return lower_in_place.active()
