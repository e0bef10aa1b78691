"""Lowering a value from its *plain* form straight into wasmtime's C structs.

An import's host function answers in the plain form (dicts for records, ``{"case":
payload}`` for variants, lists, ``bytes``: :mod:`trellis.host.runtime.codec`). Before
this module the answer went two ways: :func:`~trellis.host.runtime.codec.from_plain`
checked it against the WIT type and built wasmtime-py's objects (``Record``,
``Variant``, tuples), and then :mod:`.lower_in_place` walked those objects again to
write them. Here each WIT type gets a *plain writer*, built once and kept on the type,
that checks a plain value and writes it where it goes, in one walk (the layouts and the
allocation helpers are :mod:`.lower_in_place`'s).

A plain writer accepts the common, valid value only (an ``int`` in range, a ``str``, a
``dict`` with exactly the record's fields, ...). Anything else, or a type it has no
writer for (resources, flags), makes :func:`lower_root` undo what it wrote and answer
False: the caller then takes the full way (``from_plain``), which names what is wrong
with the value (a :class:`~trellis.host.runtime.codec.CodecError` with its path) or
converts the unusual-but-valid value itself. So a value is accepted here exactly when
``from_plain`` accepts it, and written as wasmtime-py would write what ``from_plain``
makes of it. (One difference, for the better: a variant case is named by the plain
value's key, so an untagged variant whose cases wasmtime-py cannot tell apart, which
``from_plain`` refuses, is written faithfully.) ``TRELLIS_LOWER_PLAIN=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any

from wasmtime import _ffi as ffi

from . import lower_in_place as L
from .wit import INT_RANGES, EnumT, ListT, OptionT, Prim, RecordT, ResultT, TupleT, VariantT, WitType

__all__ = ["lower_root", "plain_writer", "WRITTEN"]

#: whether lower_root writes (off: every value takes from_plain and wasmtime-py's objects);
#: ``tuning.wasm.lower_plain`` (``TRELLIS_LOWER_PLAIN``), set by wasmtime_patches.switch
enabled = True

#: a host function's answer when it was written into its result slot already
WRITTEN: Any = object()

#: (kind, writer): the writer checks ``val`` and fills the payload at ``off`` in ``buf`` (a ctypes
#: array over memory starting at address ``base``); any exception means "not the common form"
PlainWriter = Callable[[Any, Any, int, int], None]

_KEY = "_trellis_plain_writer"


class _NotCommon(Exception):
    """The value is not in the common form this module writes: ``from_plain`` decides."""


_NOT_COMMON = _NotCommon()

_PRIM_KINDS = {
    "bool": ffi.WASMTIME_COMPONENT_BOOL, "s8": ffi.WASMTIME_COMPONENT_S8, "u8": ffi.WASMTIME_COMPONENT_U8,
    "s16": ffi.WASMTIME_COMPONENT_S16, "u16": ffi.WASMTIME_COMPONENT_U16, "s32": ffi.WASMTIME_COMPONENT_S32,
    "u32": ffi.WASMTIME_COMPONENT_U32, "s64": ffi.WASMTIME_COMPONENT_S64, "u64": ffi.WASMTIME_COMPONENT_U64,
    "f32": ffi.WASMTIME_COMPONENT_F32, "f64": ffi.WASMTIME_COMPONENT_F64, "char": ffi.WASMTIME_COMPONENT_CHAR,
    "string": ffi.WASMTIME_COMPONENT_STRING,
}
_INT_FORMATS = {"s8": "b", "u8": "B", "s16": "h", "u16": "H", "s32": "i", "u32": "I", "s64": "q", "u64": "Q"}


def plain_writer(ty: WitType) -> tuple[int, PlainWriter] | None:
    """``ty``'s kind and plain writer, or None when only ``from_plain`` lowers it (kept on the type)."""
    d = ty.__dict__
    try:
        return d[_KEY]
    except KeyError:
        found = d[_KEY] = _build(ty)  # frozen dataclass: a cache is no field
        return found


def _build(ty: WitType) -> tuple[int, PlainWriter] | None:
    if isinstance(ty, Prim):
        return int(_PRIM_KINDS[ty.name].value), _prim(ty.name)
    if isinstance(ty, EnumT):
        return int(ffi.WASMTIME_COMPONENT_ENUM.value), _enum(ty)
    if isinstance(ty, ListT):
        return _list(ty)
    if isinstance(ty, TupleT):
        return _tuple(ty)
    if isinstance(ty, RecordT):
        return _record(ty)
    if isinstance(ty, (VariantT, OptionT, ResultT)):
        return _variant_like(ty)
    return None  # flags, own, borrow: from_plain (and wasmtime-py's conversion)


def _prim(name: str) -> PlainWriter:
    bounds = INT_RANGES.get(name)
    if bounds is not None:
        lo, hi = bounds
        pack = _packer(_INT_FORMATS[name])

        def integer(val: Any, buf: Any, base: int, off: int) -> None:
            if val.__class__ is not int or not lo <= val <= hi:
                raise _NOT_COMMON
            pack(buf, off, val)
        return integer
    if name == "string":
        return _string
    if name == "bool":
        pack_bool = _packer("?")

        def boolean(val: Any, buf: Any, base: int, off: int) -> None:
            if val.__class__ is not bool:
                raise _NOT_COMMON
            pack_bool(buf, off, val)
        return boolean
    if name in ("f32", "f64"):
        pack_float = _packer("f" if name == "f32" else "d")

        def floating(val: Any, buf: Any, base: int, off: int) -> None:
            if val.__class__ is not float:
                raise _NOT_COMMON
            pack_float(buf, off, val)
        return floating
    assert name == "char"
    pack_u32 = _packer("I")

    def char(val: Any, buf: Any, base: int, off: int) -> None:
        if val.__class__ is not str or len(val) != 1 or 0xD800 <= ord(val) <= 0xDFFF:
            raise _NOT_COMMON
        pack_u32(buf, off, ord(val))
    return char


def _packer(fmt: str) -> Callable[..., None]:
    return struct.Struct("<" + fmt).pack_into


def _string(val: Any, buf: Any, base: int, off: int) -> None:
    if val.__class__ is not str:
        raise _NOT_COMMON
    data = val.encode("utf-8")  # a lone surrogate raises: from_plain names it
    L._lib.vec_new(base + off, len(data), data)  # type: ignore[union-attr]  # set by lower_in_place.apply()


def _enum(ty: EnumT) -> PlainWriter:
    encoded = {name: name.encode("utf-8") for name in ty.names}

    def enum(val: Any, buf: Any, base: int, off: int) -> None:
        name = encoded.get(val) if val.__class__ is str else None
        if name is None:
            raise _NOT_COMMON
        L._lib.vec_new(base + off, len(name), name)  # type: ignore[union-attr]  # set by lower_in_place.apply()
    return enum


def _bytes(val: Any, buf: Any, base: int, off: int) -> None:
    if val.__class__ is not bytes:
        if val.__class__ is not bytearray and val.__class__ is not memoryview:
            raise _NOT_COMMON  # a list of numbers: from_plain checks each
        val = bytes(val)  # (as from_plain takes them)
    L._lib.list_new(base + off, len(val))  # type: ignore[union-attr]  # set by lower_in_place.apply()
    if val:
        L.write_byte_list(L._read_ptr(buf, off + 8)[0], val)


def _children(types: list[WitType]) -> list[tuple[int, PlainWriter]] | None:
    found = [plain_writer(t) for t in types]
    return None if any(w is None for w in found) else found  # type: ignore[return-value]  # no None left


def _list(ty: ListT) -> tuple[int, PlainWriter] | None:
    kind = int(ffi.WASMTIME_COMPONENT_LIST.value)
    if ty.is_bytes:
        return kind, _bytes
    child = _children([ty.element])
    if child is None:
        return None
    el_kind, el = child[0]
    slot = L._slot(el_kind)
    stride, voff = L.STRIDE, L.VALUE_OFF

    def lst(val: Any, buf: Any, base: int, off: int) -> None:
        if val.__class__ is not list and val.__class__ is not tuple:
            raise _NOT_COMMON
        n = len(val)
        lib = L._lib
        lib.list_new(base + off, n)  # type: ignore[union-attr]  # set by lower_in_place.apply()
        if not n:
            return
        data = L._read_ptr(buf, off + 8)[0]
        size = n * stride
        lib.copy(data, slot * n, size)  # type: ignore[union-attr]  # every element a valid value of its kind
        region = L._region(data, size)
        o = voff
        for v in val:
            el(v, region, data, o)
            o += stride
    return kind, lst


def _tuple(ty: TupleT) -> tuple[int, PlainWriter] | None:
    children = _children(list(ty.elements))
    if children is None:
        return None
    writers = [(i * L.STRIDE + L.VALUE_OFF, w) for i, (_, w) in enumerate(children)]
    image = b"".join(L._slot(k) for k, _ in children)
    n = len(children)
    arr = ctypes.c_char * max(len(image), 1)

    def tup(val: Any, buf: Any, base: int, off: int) -> None:
        if (val.__class__ is not tuple and val.__class__ is not list) or len(val) != n:
            raise _NOT_COMMON
        data, region = L._allocate(L._lib.tuple_new, buf, base, off, n, image, arr)  # type: ignore[union-attr]  # set by lower_in_place.apply()
        for v, (o, w) in zip(val, writers, strict=True):
            w(v, region, data, o)
    return int(ffi.WASMTIME_COMPONENT_TUPLE.value), tup


def _record(ty: RecordT) -> tuple[int, PlainWriter] | None:
    fields = list(ty.fields)
    children = _children([t for _, t in fields])
    if children is None:
        return None
    entry, entry_val = L._ENTRY, L._ENTRY_VAL
    entries = [(name, name.encode("utf-8"), i * entry, i * entry + entry_val + L.VALUE_OFF, w)
               for i, ((name, _), (_, w)) in enumerate(zip(fields, children, strict=True))]
    image = b"".join(bytes(entry_val) + L._slot(k) + bytes(entry - entry_val - L.STRIDE) for k, _ in children)
    n = len(fields)
    keys = frozenset(name for name, _ in fields)
    arr = ctypes.c_char * max(len(image), 1)

    def record(val: Any, buf: Any, base: int, off: int) -> None:
        if val.__class__ is not dict or val.keys() != keys:
            raise _NOT_COMMON
        lib = L._lib
        data, region = L._allocate(lib.record_new, buf, base, off, n, image, arr)  # type: ignore[union-attr]  # set by lower_in_place.apply()
        for name, encoded, name_off, val_off, w in entries:
            lib.vec_new(data + name_off, len(encoded), encoded)  # type: ignore[union-attr]  # set by lower_in_place.apply()
            w(val[name], region, data, val_off)
    return int(ffi.WASMTIME_COMPONENT_RECORD.value), record


def _variant_like(ty: VariantT | OptionT | ResultT) -> tuple[int, PlainWriter] | None:
    """Option: ``None`` or the payload (``{"some": v}`` when the payload is an option itself);
    result: ``{"ok": v}`` or ``{"err": e}``; variant: ``{"case": payload}``, or the bare case name
    of a case without payload. A payload goes to a heap value, as :mod:`.lower_in_place` does."""
    cases = ty.case_types()
    children = _children([t for _, t in cases if t is not None])
    if children is None:
        return None
    it = iter(children)
    # case name -> (its name encoded, its payload's slot template and writer or None)
    table: dict[str, tuple[bytes, tuple[bytes, PlainWriter] | None]] = {}
    for name, t in cases:
        if t is None:
            table[name] = (name.encode("utf-8"), None)
        else:
            k, w = next(it)
            table[name] = (name.encode("utf-8"), (L._slot(k), w))
    value_arr = L._ARRAYS[L.STRIDE.bit_length()]
    stride, voff = L.STRIDE, L.VALUE_OFF

    def payload_into(case: tuple[bytes, PlainWriter], payload: Any, buf: Any, at: int) -> None:
        slot, w = case
        heap = L._lib.val_new(ctypes.create_string_buffer(slot, stride))  # type: ignore[union-attr]  # set by lower_in_place.apply()
        L._write_ptr(buf, at, heap)  # owned by this value from here
        w(payload, value_arr.from_address(heap), heap, voff)

    if isinstance(ty, OptionT):
        some = table["some"][1]
        assert some is not None
        nested = isinstance(ty.payload, OptionT)

        def option(val: Any, buf: Any, base: int, off: int) -> None:
            if val is None:
                return  # none: the slot's zero payload
            if nested:
                if val.__class__ is not dict or len(val) != 1 or "some" not in val:
                    raise _NOT_COMMON
                val = val["some"]
            payload_into(some, val, buf, off)
        return int(ffi.WASMTIME_COMPONENT_OPTION.value), option

    is_result = isinstance(ty, ResultT)
    at = L._RESULT_VAL if is_result else L._VARIANT_VAL

    def variant(val: Any, buf: Any, base: int, off: int) -> None:
        cls = val.__class__
        if cls is dict and len(val) == 1:
            ((name, payload),) = val.items()
        elif cls is str and not is_result:
            name, payload = val, None  # a bare name: a case without payload (checked below)
        else:
            raise _NOT_COMMON
        found = table.get(name)
        if found is None:
            raise _NOT_COMMON
        encoded, case = found
        if case is not None and cls is str:
            raise _NOT_COMMON  # a bare name names a case without payload
        if is_result:
            L._write_bool(buf, off, name == "ok")
        else:
            L._lib.vec_new(base + off, len(encoded), encoded)  # type: ignore[union-attr]  # set by lower_in_place.apply()
        if case is None:
            if payload is not None:
                raise _NOT_COMMON
            return
        payload_into(case, payload, buf, off + at)
    kind = ffi.WASMTIME_COMPONENT_RESULT if is_result else ffi.WASMTIME_COMPONENT_VARIANT
    return int(kind.value), variant


def lower_root(ty: WitType, val: Any, ptr: Any) -> bool:
    """Write plain ``val`` of ``ty`` into ``*ptr``; False (the slot left as it was given) when
    ``ty`` has no plain writer or ``val`` is not in the common form: take ``from_plain``."""
    if not enabled or not L.active():
        return False
    entry = plain_writer(ty)
    if entry is None:
        return False
    kind, w = entry
    addr = ctypes.addressof(ptr.contents)
    lib = L._lib
    assert lib is not None
    lib.copy(addr, L._slot(kind), L.STRIDE)
    try:
        w(val, L._region(addr, L.STRIDE), addr, L.VALUE_OFF)
    except Exception:  # noqa: BLE001 (any failure: the full way names it, or converts the value)
        lib.val_delete(addr)
        lib.copy(addr, L._slot(ffi.WASMTIME_COMPONENT_BOOL.value), L.STRIDE)  # as wasmtime-py leaves it
        return False
    return True
