"""Lowering component values in place: the seventh correction to wasmtime-py (see
:mod:`trellis.host.runtime.wasmtime_patches` for the first six).

wasmtime-py lowers a value into wasmtime's C structs one ctypes object at a time:
for every element of a list it makes a pointer to a fresh view of the slot, then a
view of the view to set its kind and another to set its payload; a variant's payload
is built in a temporary struct and moved to the heap. A query result of 12,000 rows
of five ``tuple<string, sql-value>`` cells made some 25 such objects per cell.

Here each type gets a *writer*, built once and kept on the type, that fills a slot
it is given by address:

* a container (list, tuple, record) allocates its elements with wasmtime's
  ``*_new_uninit`` and sets every element's kind in one copy, from a template: a
  slot of the right kind with a zero payload is already a valid value (an empty
  string or list, a variant without payload, ``none``), so the whole tree is valid
  at every step and a failure part-way frees it with one ``wasmtime_component_val_delete``;
* a payload is written where it lives: numbers with ``struct.pack_into``, strings by
  ``wasm_byte_vec_new`` straight into their slot, a variant's payload in a heap
  value made with ``wasmtime_component_val_new`` from a template of its kind.

Types that can hold a resource handle keep wasmtime-py's conversion (a zero
resource slot is not a valid value), and so do flags. ``TRELLIS_LOWER_IN_PLACE=0``
turns it off. :func:`apply` installs it after checking the struct layout it assumes.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types as T

log = logging.getLogger(__name__)

ENV = "TRELLIS_LOWER_IN_PLACE"

_VAL = ffi.wasmtime_component_val_t


def _offset(struct_type: Any, field: str) -> int:
    """Where ``field`` starts in a ctypes structure (its class attribute is a field descriptor)."""
    return int(getattr(struct_type, field).offset)


def _size(struct_type: Any, field: str) -> int:
    return int(getattr(struct_type, field).size)

#: a component value in wasmtime's C API: its size, and where its payload starts (after the kind)
STRIDE = _STRIDE = ctypes.sizeof(_VAL)
VALUE_OFF = _VOFF = _offset(_VAL, "of")
_ENTRY = ctypes.sizeof(ffi.wasmtime_component_valrecord_entry_t)
_ENTRY_VAL = _offset(ffi.wasmtime_component_valrecord_entry_t, "val")
_VARIANT_VAL = _offset(ffi.wasmtime_component_valvariant_t, "val")
_RESULT_VAL = _offset(ffi.wasmtime_component_valresult_t, "val")
_PTR = struct.Struct("<Q")
_read_ptr = _PTR.unpack_from
_write_ptr = _PTR.pack_into
_write_bool = struct.Struct("<?").pack_into

#: (kind, writer): the writer fills the payload at ``off`` in ``buf`` (a ctypes array over
#: memory that starts at address ``base``); the slot's kind is set by whoever allocated it
Writer = Callable[[Any, Any, Any, int, int], None]

_KIND = "_trellis_kind"
_WRITER = "_trellis_writer"
_FALLBACK: Any = None  # a type wasmtime-py lowers itself: no writer


class _Lib:
    """wasmtime's allocation functions with argument types of our own (plain addresses)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        def fn(name: str, args: list[Any], res: Any = None) -> Any:
            f = lib[name]
            f.argtypes, f.restype = args, res
            return f
        vp, size = ctypes.c_void_p, ctypes.c_size_t
        self.vec_new = fn("wasm_byte_vec_new", [vp, size, ctypes.c_char_p])
        self.list_new = fn("wasmtime_component_vallist_new_uninit", [vp, size])
        self.tuple_new = fn("wasmtime_component_valtuple_new_uninit", [vp, size])
        self.record_new = fn("wasmtime_component_valrecord_new_uninit", [vp, size])
        self.val_new = fn("wasmtime_component_val_new", [vp], vp)
        self.val_delete = fn("wasmtime_component_val_delete", [vp])
        # libc's, keeping the GIL (ctypes.memmove releases it: a thread switch per call)
        self.copy = ctypes.PyDLL(None).memmove
        self.copy.argtypes, self.copy.restype = [vp, ctypes.c_char_p, size], vp


_lib: _Lib | None = None
_ARRAYS: list[Any] = [ctypes.c_char * (1 << k) for k in range(48)]


def _region(addr: int, size: int) -> Any:
    """A ctypes array over ``size`` bytes (rounded up to a power of two) at ``addr``."""
    return _ARRAYS[max(size - 1, 1).bit_length()].from_address(addr)


@cache
def _slot(kind: int) -> bytes:
    """A value slot of ``kind`` with a zero payload."""
    return bytes((kind,)) + bytes(_STRIDE - 1)


def _kind_of(ty: Any) -> int | None:
    kinds = {
        T.Bool: ffi.WASMTIME_COMPONENT_BOOL, T.S8: ffi.WASMTIME_COMPONENT_S8, T.U8: ffi.WASMTIME_COMPONENT_U8,
        T.S16: ffi.WASMTIME_COMPONENT_S16, T.U16: ffi.WASMTIME_COMPONENT_U16, T.S32: ffi.WASMTIME_COMPONENT_S32,
        T.U32: ffi.WASMTIME_COMPONENT_U32, T.S64: ffi.WASMTIME_COMPONENT_S64, T.U64: ffi.WASMTIME_COMPONENT_U64,
        T.F32: ffi.WASMTIME_COMPONENT_F32, T.F64: ffi.WASMTIME_COMPONENT_F64, T.Char: ffi.WASMTIME_COMPONENT_CHAR,
        T.String: ffi.WASMTIME_COMPONENT_STRING, T.ListType: ffi.WASMTIME_COMPONENT_LIST,
        T.RecordType: ffi.WASMTIME_COMPONENT_RECORD, T.TupleType: ffi.WASMTIME_COMPONENT_TUPLE,
        T.VariantType: ffi.WASMTIME_COMPONENT_VARIANT, T.EnumType: ffi.WASMTIME_COMPONENT_ENUM,
        T.OptionType: ffi.WASMTIME_COMPONENT_OPTION, T.ResultType: ffi.WASMTIME_COMPONENT_RESULT,
    }
    kind = kinds.get(type(ty))
    return None if kind is None else int(kind.value)


def writer(ty: Any) -> tuple[int, Writer] | None:
    """``ty``'s kind and writer, or None when wasmtime-py must lower it (kept on the type)."""
    d = ty.__dict__
    try:
        return d[_WRITER]
    except KeyError:
        found = d[_WRITER] = _build(ty)
        return found


# (struct format, the classes wasmtime-py accepts) per number type
_NUMBERS = {
    T.Bool: ("?", bool), T.S8: ("b", int), T.U8: ("B", int), T.S16: ("h", int), T.U16: ("H", int),
    T.S32: ("i", int), T.U32: ("I", int), T.S64: ("q", int), T.U64: ("Q", int), T.F32: ("f", float),
    T.F64: ("d", float),
}


def _build(ty: Any) -> tuple[int, Writer] | None:
    kind = _kind_of(ty)
    if kind is None:  # resources, flags, streams, ...: wasmtime-py's own conversion
        return None
    number = _NUMBERS.get(type(ty))
    if number is not None:
        return kind, _number(*number)
    if isinstance(ty, T.Char):
        return kind, _char
    if isinstance(ty, (T.String, T.EnumType)):
        return kind, _string
    if isinstance(ty, T.ListType):
        return _list(ty, kind)
    if isinstance(ty, T.TupleType):
        return _tuple(ty, kind)
    if isinstance(ty, T.RecordType):
        return _record(ty, kind)
    return _variant_like(ty, kind)


def _number(fmt: str, cls: type) -> Writer:
    pack = struct.Struct("<" + fmt).pack_into
    message = f"expected {cls.__name__}"

    def number(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
        if not isinstance(val, cls):
            raise TypeError(message)
        pack(buf, off, val)
    return number


_pack_u32 = struct.Struct("<I").pack_into


def _char(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
    if not isinstance(val, str) or len(val) != 1:
        raise TypeError("expected single-character string for Char type")
    _pack_u32(buf, off, ord(val))


def _string(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
    if val.__class__ is not str and not isinstance(val, str):
        raise TypeError("expected string type")
    data = val.encode("utf8")
    _lib.vec_new(base + off, len(data), data)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built


def _children(types: list[Any]) -> list[tuple[int, Writer]] | None:
    found = [writer(t) for t in types]
    return None if any(w is None for w in found) else found  # type: ignore[return-value]  # no None left: checked on the left


def _list(ty: Any, kind: int) -> tuple[int, Writer] | None:
    if ty._is_bytes():
        return kind, _bytes
    child = _children([ty.element])
    if child is None:
        return None
    el_kind, el = child[0]
    slot = _slot(el_kind)

    def lst(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
        if not isinstance(val, list):
            raise TypeError("expected list value")
        n = len(val)
        lib = _lib
        lib.list_new(base + off, n)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
        if not n:
            return
        data = _read_ptr(buf, off + 8)[0]
        size = n * _STRIDE
        lib.copy(data, slot * n, size)  # type: ignore[union-attr]  # every element a valid value of its kind
        region = _region(data, size)
        o = _VOFF
        for v in val:
            el(store, v, region, data, o)
            o += _STRIDE
    return kind, lst


_U8 = bytes((ffi.WASMTIME_COMPONENT_U8.value,))
_KIND_OFF = _offset(_VAL, "kind")


def byte_list_image(data: bytes) -> bytearray:
    """The elements of a ``list<u8>`` as wasmtime lays them out: one ``u8`` value per byte."""
    image = bytearray(len(data) * _STRIDE)
    image[_KIND_OFF::_STRIDE] = _U8 * len(data)
    image[_VOFF::_STRIDE] = data
    return image


def write_byte_list(address: int, data: bytes) -> None:
    """Fill the ``len(data)`` elements of a ``list<u8>`` wasmtime allocated at ``address``
    (``*_new_uninit``) with ``data``. The image is copied from where it was built, never
    through a ``bytes`` of it: a 256 KiB piece is an 8 MiB image, and that copy was most of
    the time (~45 -> ~11 ms a piece)."""
    image = byte_list_image(data)
    size = len(image)
    ctypes.memmove(address, (ctypes.c_char * size).from_buffer(image), size)


def _bytes(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
    if not isinstance(val, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes value")
    data = bytes(val)
    _lib.list_new(base + off, len(data))  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
    if data:
        write_byte_list(_read_ptr(buf, off + 8)[0], data)


def _allocate(new: Any, buf: Any, base: int, off: int, n: int, image: bytes, arr: Any) -> tuple[int, Any]:
    """A tuple's or record's ``n`` elements allocated into the slot at ``off`` and set from
    ``image`` (their kinds, zero payloads): their address and a ctypes array over them."""
    new(base + off, n)
    data = _read_ptr(buf, off + 8)[0]
    _lib.copy(data, image, len(image))  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
    return data, arr.from_address(data)


def _tuple(ty: Any, kind: int) -> tuple[int, Writer] | None:
    children = _children(list(ty.elements))
    if children is None:
        return None
    writers = [(i * _STRIDE + _VOFF, w) for i, (_, w) in enumerate(children)]
    image = b"".join(_slot(k) for k, _ in children)
    n, size = len(children), len(image)
    arr = ctypes.c_char * max(size, 1)

    def tup(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
        if not isinstance(val, tuple):
            raise TypeError("expected tuple type")
        if len(val) != n:
            raise TypeError("tuple length mismatch")
        data, region = _allocate(_lib.tuple_new, buf, base, off, n, image, arr)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
        for v, (o, w) in zip(val, writers, strict=False):  # (lengths checked above)
            w(store, v, region, data, o)
    return kind, tup


def _record(ty: Any, kind: int) -> tuple[int, Writer] | None:
    fields = list(ty.fields)
    children = _children([t for _, t in fields])
    if children is None:
        return None
    entries = [(name, name.encode("utf8"), i * _ENTRY, i * _ENTRY + _ENTRY_VAL + _VOFF, w)
               for i, ((name, _), (_, w)) in enumerate(zip(fields, children, strict=True))]
    image = b"".join(bytes(_ENTRY_VAL) + _slot(k) + bytes(_ENTRY - _ENTRY_VAL - _STRIDE) for k, _ in children)
    n, size = len(fields), len(image)
    arr = ctypes.c_char * max(size, 1)

    def record(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
        lib = _lib
        data, region = _allocate(lib.record_new, buf, base, off, n, image, arr)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
        for name, encoded, name_off, val_off, w in entries:
            lib.vec_new(data + name_off, len(encoded), encoded)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
            w(store, getattr(val, name), region, data, val_off)
    return kind, record


def _variant_like(ty: Any, kind: int) -> tuple[int, Writer] | None:
    """Variant, option and result: the case is picked as wasmtime-py's patched lowering picks
    it (:func:`trellis.host.runtime.wasmtime_patches.pick_case`); a payload goes to a heap value."""
    from .wasmtime_patches import untagged_cases

    cases = list(ty._cases())
    children = _children([t for _, t in cases if t is not None])
    if children is None:
        return None
    payloads: dict[str, tuple[bytes, Writer] | None] = {}
    it = iter(children)
    for name, t in cases:
        if t is None:
            payloads[name] = None
        else:
            k, w = next(it)
            payloads[name] = (_slot(k), w)
    names = {name: name.encode("utf8") for name, _ in cases}
    is_option, is_result = isinstance(ty, T.OptionType), isinstance(ty, T.ResultType)
    # where the payload's pointer goes within this value's payload
    at = 0 if is_option else _RESULT_VAL if is_result else _VARIANT_VAL
    tagged = ty._tagged()
    # untagged: the first case, in this order, whose classes the value has (None: no payload)
    order = [(name, None if t is None else classes) for name, t, classes in ([] if tagged else untagged_cases(ty))]
    variant_class, value_arr = T.Variant, _ARRAYS[_STRIDE.bit_length()]

    def variant(store: Any, val: Any, buf: Any, base: int, off: int) -> None:
        if tagged:
            if not isinstance(val, variant_class):
                raise TypeError("expected Variant type")
            name, payload = val.tag, val.payload
            if name not in payloads:
                raise ValueError("value not valid for this variant")
        else:
            for name, classes in order:  # noqa: B007 (name: the case found, after the loop)
                if val is None if classes is None else isinstance(val, classes):
                    break
            else:
                raise ValueError("value not valid for this variant")
            payload = val
        lib = _lib
        if is_result:
            _write_bool(buf, off, name == "ok")
        elif not is_option:
            encoded = names[name]
            lib.vec_new(base + off, len(encoded), encoded)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
        case = payloads[name]
        if case is None:
            return
        slot, w = case
        heap = lib.val_new(ctypes.create_string_buffer(slot, _STRIDE))  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
        _write_ptr(buf, off + at, heap)  # owned by this value from here
        w(store, payload, value_arr.from_address(heap), heap, _VOFF)
    return kind, variant


#: whether lower_root lowers (tests turn it off to compare with wasmtime-py's own conversion)
enabled = True


def lower_root(ty: Any, store: Any, val: Any, ptr: Any) -> bool:
    """Lower ``val`` into ``*ptr`` in place; False when ``ty`` is one wasmtime-py must lower."""
    if not enabled:
        return False
    entry = writer(ty)
    if entry is None:
        return False
    kind, w = entry
    addr = ctypes.addressof(ptr.contents)
    _lib.copy(addr, _slot(kind), _STRIDE)  # type: ignore[union-attr]  # _lib is set by apply(), before any writer is built
    try:
        w(store, val, _region(addr, _STRIDE), addr, _VOFF)
    except BaseException:
        lib = _lib
        assert lib is not None
        lib.val_delete(addr)
        lib.copy(addr, _slot(ffi.WASMTIME_COMPONENT_BOOL.value), _STRIDE)  # as wasmtime-py leaves it
        raise
    return True


def _layout_ok() -> bool:
    return (_STRIDE == 32 and _VOFF == 8 and _offset(_VAL, "kind") == 0 and _size(_VAL, "kind") == 1
            and _offset(ffi.wasmtime_component_vallist_t, "data") == 8
            and _offset(ffi.wasmtime_component_valtuple_t, "data") == 8
            and _offset(ffi.wasmtime_component_valrecord_t, "data") == 8 and _offset(ffi.wasm_byte_vec_t, "size") == 0
            and ctypes.sizeof(ctypes.c_void_p) == 8 and _offset(ffi.wasmtime_component_valresult_t, "is_ok") == 0)


def apply(lib: ctypes.CDLL) -> bool:
    """Install: containers and variants lower in place. False (and wasmtime-py's conversion
    stays) when the struct layout is not the one this was written for."""
    global _lib
    if not _layout_ok():
        log.warning("wasmtime-py component value layout not recognised; values are lowered the slow way")
        return False
    if _lib is None:
        _lib = _Lib(lib)
    return True


def active() -> bool:
    return _lib is not None and enabled
