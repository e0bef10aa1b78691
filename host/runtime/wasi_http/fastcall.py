"""The host's ``wasi:io`` / ``wasi:http`` functions registered with wasmtime's C API directly.

A wasi:http request is 15-20 host calls (method, path, body stream, reads, response,
fields, writes, outparam, ...). Through wasmtime-py each one is a ctypes callback that
wraps the function's type and every argument in Python objects (``ResourceAny``,
``ResourceHost``, ``Variant``, ctypes views) and lowers the result the same way: ~30 µs
a call, more than half of what such a request costs the host.

Here each function is added to the linker with a callback of our own
(``wasmtime_component_linker_instance_add_func``, plain addresses for every argument)
that reads and writes wasmtime's ``wasmtime_component_val_t`` slots itself:

* resource arguments: ``resource_any_to_host`` → rep and type (checked), the handle
  deleted, the object looked up in the instance's table (as :mod:`.binding` does);
* numbers, strings and ``list<u8>``: read from the slot (and freed, as wasmtime-py does);
* results: ``own<R>`` made with ``resource_host_new`` + ``to_any``; results, options and
  variants carrying one are written in place; the rest through
  :mod:`trellis.host.runtime.lower_in_place`'s writers.

Anything else (a ``list<borrow<pollable>>``) goes through wasmtime-py's conversion and the
codec, read from the same slot: one function may mix both. Errors trap the guest as the
generic binding's do. Used only when :mod:`trellis.host.runtime.lower_in_place` is active;
``TRELLIS_WASI_HTTP_FAST=0`` keeps wasmtime-py's callbacks (:mod:`.binding`), for comparison.
When :mod:`.native` is available the callbacks are its C ones, with this module's code for
the values they leave to Python.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from collections.abc import Callable
from typing import Any

from wasmtime import StoreContext, WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component import ResourceType
from wasmtime.component import _types as T

from .. import lower_in_place as lip
from ..codec import CodecError, from_plain, to_plain
from ..codec.common import nullable, run
from ..codec.lower import _lowerer, _plain_case
from ..imports import (
    CURRENT_CALL,
    RESOURCE_TYPE_IDS,
    HostResource,
    ResourceTable,
    _ResourceBridge,
)
from ..wit import (
    BorrowT,
    ListT,
    OptionT,
    OwnT,
    Prim,
    ResultT,
    TupleT,
    VariantT,
    mentions_resources,
)
from . import native

__all__ = ["ENV", "RawFunction", "active", "add_resource"]

ENV = "TRELLIS_WASI_HTTP_FAST"
#: on unless switched off (``tuning.wasm.wasi_http_fast``: wasmtime_patches.switch)
enabled = True

_STRIDE, _VOFF = lip.STRIDE, lip.VALUE_OFF
_RESOURCE = int(ffi.WASMTIME_COMPONENT_RESOURCE.value)
_BOOL = int(ffi.WASMTIME_COMPONENT_BOOL.value)
_RESOURCE_KIND = bytes((_RESOURCE,))
_RESULT_AT: int = ffi.wasmtime_component_valresult_t.val.offset  # type: ignore[attr-defined]  # a ctypes field descriptor; typeshed types it as the value
_VARIANT_AT: int = ffi.wasmtime_component_valvariant_t.val.offset  # type: ignore[attr-defined]  # a ctypes field descriptor; typeshed types it as the value
_U64 = struct.Struct("<Q")
_VEC = struct.Struct("<QQ")
_SLOT = ctypes.c_char * _STRIDE
#: a payload-less slot (a bool): what a result slot holds before and after a failed lowering
_EMPTY = bytes((_BOOL,)) + bytes(_STRIDE - 1)
_PRIMS = {"bool": "<?", "u8": "<B", "s8": "<b", "u16": "<H", "s16": "<h", "u32": "<I", "s32": "<i",
          "u64": "<Q", "s64": "<q", "f32": "<f", "f64": "<d"}

#: (context address, table): what a writer needs to make resources
Env = tuple[int, ResourceTable]
#: writes the plain value into the slot payload at ``off`` of ``buf`` (memory at ``base``)
Write = Callable[[Env, Any, Any, int, int], None]
#: reads argument ``i``'s slot at ``addr``: (context, table, addr) -> plain value
Read = Callable[[int, ResourceTable, int], Any]


class _C:
    """wasmtime's C functions this module calls, with plain-address argument types (GIL kept)."""

    def __init__(self) -> None:
        lib = ctypes.PyDLL(str(ffi.filename))
        vp, size = ctypes.c_void_p, ctypes.c_size_t

        def fn(name: str, args: list[Any], res: Any = None) -> Any:
            f = lib[name]
            f.argtypes, f.restype = args, res
            return f
        self.to_host = fn("wasmtime_component_resource_any_to_host", [vp, vp, vp], vp)
        self.host_rep = fn("wasmtime_component_resource_host_rep", [vp], ctypes.c_uint32)
        self.host_type = fn("wasmtime_component_resource_host_type", [vp], ctypes.c_uint32)
        self.host_delete = fn("wasmtime_component_resource_host_delete", [vp])
        self.host_new = fn("wasmtime_component_resource_host_new", [ctypes.c_bool, ctypes.c_uint32, ctypes.c_uint32],
                           vp)
        self.host_to_any = fn("wasmtime_component_resource_host_to_any", [vp, vp, vp], vp)
        self.any_delete = fn("wasmtime_component_resource_any_delete", [vp])
        self.vec_delete = fn("wasm_byte_vec_delete", [vp])
        self.tuple_delete = fn("wasmtime_component_valtuple_delete", [vp])
        self.val_new = fn("wasmtime_component_val_new", [vp], vp)
        self.val_delete = fn("wasmtime_component_val_delete", [vp])
        self.add_resource = fn("wasmtime_component_linker_instance_add_resource",
                               [vp, ctypes.c_char_p, size, vp, _DTOR, vp, _FINALIZER], vp)
        self.add_func = fn("wasmtime_component_linker_instance_add_func",
                           [vp, ctypes.c_char_p, size, _CALLBACK, vp, _FINALIZER], vp)
        # the same two with plain addresses for the callbacks (native.py's C functions)
        self.add_func_raw = fn("wasmtime_component_linker_instance_add_func", [vp, ctypes.c_char_p, size, vp, vp, vp],
                               vp)
        self.add_resource_raw = fn("wasmtime_component_linker_instance_add_resource",
                                   [vp, ctypes.c_char_p, size, vp, vp, vp, vp], vp)


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_DTOR = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)
_NO_FINALIZER = _FINALIZER(lambda data: None)
_c: _C | None = None
_FUNCTIONS: dict[int, RawFunction] = {}
_ids = itertools.count(1)


def active() -> bool:
    """Whether host functions are registered here (switch on, in-place lowering active)."""
    global _c
    if not enabled or not lip.active():
        return False
    if _c is None:
        _c = _C()
    return True


def _error(message: str) -> int:
    return ctypes.cast(WasmtimeError(message)._consume(), ctypes.c_void_p).value or 0


@_CALLBACK
def _callback(idx, context, ty_raw, args, nargs, results, nresults):
    fn = _FUNCTIONS.get(idx or 0)
    if fn is None:
        return _error("unknown host function")
    try:
        return fn.call(context, ty_raw, args or 0, nargs, results or 0)
    except BaseException as e:  # noqa: BLE001 - never unwind into wasmtime
        return _error(f"host function failed: {type(e).__name__}: {e}")


@_FINALIZER
def _finalize(idx):
    _FUNCTIONS.pop(idx or 0, None)


class _Store:
    """A ``StoreContext`` over the callback's context, made only when a slow path needs one."""

    __slots__ = ("ctx", "raw")

    def __init__(self, raw: int) -> None:
        self.raw = raw
        self.ctx: StoreContext | None = None

    def get(self) -> StoreContext:
        if self.ctx is None:
            self.ctx = StoreContext(ctypes.cast(self.raw, ctypes.POINTER(ffi.wasmtime_context_t)))
        return self.ctx

    def end(self) -> None:
        if self.ctx is not None:
            self.ctx._invalidate()


@_DTOR
def _dtor(idx, context, rep):
    """A host resource of a shadowed interface dropped by the guest: out of the table."""
    ctx = CURRENT_CALL.get()
    if ctx is not None:
        ctx.table.remove(rep)
    return 0


def add_resource(inst: Any, name: str, type_id: int) -> None:
    """Define host resource ``name`` (``ResourceType.host(type_id)``) in linker instance ``inst``,
    its drops answered by :func:`_dtor` (the host keeps nothing else per handle)."""
    c = _c
    assert c is not None
    encoded = name.encode("utf-8")
    ty = ResourceType.host(type_id)
    if native.available():  # the C destructor (native.py)
        dtor, no_finalizer = native.dtor_addresses()
        err = c.add_resource_raw(ctypes.cast(inst.ptr(), ctypes.c_void_p), encoded, len(encoded),
                                 ctypes.cast(ty.ptr(), ctypes.c_void_p), dtor, 0, no_finalizer)
    else:
        err = c.add_resource(ctypes.cast(inst.ptr(), ctypes.c_void_p), encoded, len(encoded),
                             ctypes.cast(ty.ptr(), ctypes.c_void_p), _dtor, 0, _NO_FINALIZER)
    if err:
        raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


# --- arguments -------------------------------------------------------------------------------


def _resource_reader(ty: OwnT | BorrowT, where: str) -> Read:
    type_id = RESOURCE_TYPE_IDS.id_for(ty.resource)
    borrow = isinstance(ty, BorrowT)
    name = ty.resource.name

    def read(context: int, table: ResourceTable, addr: int) -> Any:
        c = _c
        assert c is not None
        cell = ctypes.c_uint64.from_address(addr + _VOFF)
        any_ptr = cell.value
        cell.value = 0  # taken: ours to delete, as wasmtime-py's take_pointer does
        host = ctypes.c_void_p()
        try:
            if c.to_host(context, any_ptr, ctypes.byref(host)):
                raise CodecError(where, "guest-defined resources cannot be passed to the host")
            rep, kind = c.host_rep(host), c.host_type(host)
            c.host_delete(host)
        finally:
            c.any_delete(any_ptr)
        entry = table.get(rep) if borrow else table.remove(rep)
        if entry is None or kind != type_id:
            raise CodecError(where, f"unknown {name} handle (rep {rep})")
        return entry[1]
    return read


def _lifter(ty: Any, where: str) -> Read | None:
    """Reads a value of ``ty`` at ``addr`` as its plain form (codec's ``to_plain``), freeing
    nothing but the resource handles it takes; None for types it does not read (records, ...)."""
    if isinstance(ty, (OwnT, BorrowT)):
        return _resource_reader(ty, where)
    if isinstance(ty, Prim):
        if ty.name == "string":
            def string(context: int, table: ResourceTable, addr: int) -> Any:
                size, data = _VEC.unpack_from(_SLOT.from_address(addr), _VOFF)
                return ctypes.string_at(data, size).decode("utf-8") if size else ""
            return string
        fmt = _PRIMS.get(ty.name)
        if fmt is None:
            return None
        unpack = struct.Struct(fmt).unpack_from
        return lambda context, table, addr: unpack(_SLOT.from_address(addr), _VOFF)[0]
    if isinstance(ty, ListT):
        if ty.is_bytes:
            def byte_list(context: int, table: ResourceTable, addr: int) -> Any:
                size, data = _VEC.unpack_from(_SLOT.from_address(addr), _VOFF)
                return ctypes.string_at(data, size * _STRIDE)[_VOFF::_STRIDE] if size else b""
            return byte_list
        element = _lifter(ty.element, f"{where}[]")
        if element is None or mentions_resources(ty.element) or _partial(ty.element):
            return None  # nothing taken before a _Slow: only variants at the top may be partial

        def lst(context: int, table: ResourceTable, addr: int) -> Any:
            size, data = _VEC.unpack_from(_SLOT.from_address(addr), _VOFF)
            return [element(context, table, data + i * _STRIDE) for i in range(size)]
        return lst
    if isinstance(ty, TupleT):
        elements = [_lifter(t, f"{where}[{i}]") for i, t in enumerate(ty.elements)]
        if any(e is None for e in elements) or mentions_resources(ty) or any(_partial(t) for t in ty.elements):
            return None
        offsets = [(i * _STRIDE, e) for i, e in enumerate(elements)]

        def tup(context: int, table: ResourceTable, addr: int) -> Any:
            data = _VEC.unpack_from(_SLOT.from_address(addr), _VOFF)[1]
            return [e(context, table, data + o) for o, e in offsets]  # type: ignore[misc]  # readers built per type (Read)
        return tup
    if isinstance(ty, (ResultT, OptionT, VariantT)):
        return _variant_lifter(ty, where)
    return None


class _Slow(Exception):
    """This value takes wasmtime-py's conversion (raised before anything was read)."""


def _slow(context: int, table: ResourceTable, addr: int) -> Any:
    """The payload of a case :func:`_lifter` does not read (an ``error-code``'s records)."""
    raise _Slow


def _variant_lifter(ty: ResultT | OptionT | VariantT, where: str) -> Read | None:
    cases = ty.case_types()
    payloads = [None if t is None else _lifter(t, f"{where}.{name}") or _slow for name, t in cases]
    by_name = {name.encode(): i for i, (name, _) in enumerate(cases)}
    nested = isinstance(ty, OptionT) and nullable(ty.payload)
    unpack_ptr = _U64.unpack_from
    if isinstance(ty, OptionT):
        some = payloads[1]

        def option(context: int, table: ResourceTable, addr: int) -> Any:
            ptr = unpack_ptr(_SLOT.from_address(addr), _VOFF)[0]
            if not ptr:
                return None
            inner = some(context, table, ptr)  # type: ignore[misc]  # readers built per type (Read)
            return {"some": inner} if nested else inner
        return option
    if isinstance(ty, ResultT):
        ok, err = payloads

        def result(context: int, table: ResourceTable, addr: int) -> Any:
            slot = _SLOT.from_address(addr)
            ptr = unpack_ptr(slot, _VOFF + _RESULT_AT)[0]
            if slot[_VOFF] != b"\x00":
                return {"ok": ok(context, table, ptr) if ok is not None and ptr else None}
            return {"err": err(context, table, ptr) if err is not None and ptr else None}
        return result
    names = [name for name, _ in cases]

    def variant(context: int, table: ResourceTable, addr: int) -> Any:
        slot = _SLOT.from_address(addr)
        size, data = _VEC.unpack_from(slot, _VOFF)
        index = by_name.get(ctypes.string_at(data, size))
        if index is None:
            raise CodecError(where, "unknown variant case")
        ptr = unpack_ptr(slot, _VOFF + _VARIANT_AT)[0]
        read = payloads[index]
        return {names[index]: read(context, table, ptr) if read is not None and ptr else None}
    return variant


def _partial(ty: Any) -> bool:
    """Whether :func:`_lifter` reads only some values of ``ty`` (and raises :class:`_Slow` for the rest)."""
    if isinstance(ty, (ResultT, OptionT, VariantT)):
        return any(t is not None and (_lifter(t, "") is None or _partial(t)) for _, t in ty.case_types())
    if isinstance(ty, ListT):
        return not ty.is_bytes and _partial(ty.element)
    if isinstance(ty, TupleT):
        return any(_partial(t) for t in ty.elements)
    return False


def _arg_reader(ty: Any, where: str) -> Read | None:
    """A reader for an argument: :func:`_lifter`, then the strings and lists it read are
    freed as wasmtime-py frees them; None: wasmtime-py's conversion and the codec."""
    read = _lifter(ty, where)
    if read is None or isinstance(ty, (OwnT, BorrowT)) or (isinstance(ty, Prim) and ty.name != "string"):
        return read
    if isinstance(ty, (Prim, ListT)):
        free = "vec_delete" if isinstance(ty, Prim) else "tuple_delete"  # take(): empty afterwards

        def taken(context: int, table: ResourceTable, addr: int) -> Any:
            try:
                return read(context, table, addr)
            finally:
                getattr(_c, free)(addr + _VOFF)
        return taken
    return read  # variants and tuples: what they hold is freed with the arguments


def _slow_reader(ty: Any, wty: Any, where: str) -> Callable[[_Store, ResourceTable, int], Any]:
    with_resources = mentions_resources(ty)

    def read(store: _Store, table: ResourceTable, addr: int) -> Any:
        value = wty.convert_from_c(ffi.wasmtime_component_val_t.from_address(addr))
        if not with_resources:
            return to_plain(ty, value, path=where)
        bridge = _ResourceBridge(store.get(), table)
        try:
            return to_plain(ty, value, resources=bridge, path=where)
        finally:
            bridge.end()
    return read


# --- results ---------------------------------------------------------------------------------


def _maker(ty: OwnT, where: str) -> Callable[[Env, Any], int]:
    """``own<R>``: the object into the table, a new handle's address."""
    type_id = RESOURCE_TYPE_IDS.id_for(ty.resource)
    ref, name = ty.resource, ty.resource.name

    def make(env: Env, value: Any) -> int:
        if value.__class__ is not HostResource:
            raise CodecError(where, f"expected HostResource(obj) for {name}, got {type(value).__name__}")
        c = _c
        assert c is not None
        context, table = env
        rep = table.add(ref, value.obj)
        host = c.host_new(True, rep, type_id)
        out = ctypes.c_void_p()
        try:
            if c.host_to_any(context, host, ctypes.byref(out)):
                table.remove(rep)
                raise CodecError(where, f"cannot hand out a {name} handle")
        finally:
            c.host_delete(host)
        return out.value or 0
    return make


def _writer(ty: Any, wty: Any, where: str) -> tuple[int, Write] | None:
    """(kind, writer from a plain value) for ``ty`` (wasmtime-py's type ``wty``), or None."""
    if not mentions_resources(ty):
        entry = lip.writer(wty)
        if entry is None:
            return None
        kind, w = entry
        conv = _lowerer(ty)

        def plain(env: Env, value: Any, buf: Any, base: int, off: int) -> None:
            w(None, run(conv, value, None, where), buf, base, off)
        return kind, plain
    if isinstance(ty, OwnT):
        make = _maker(ty, where)

        def own(env: Env, value: Any, buf: Any, base: int, off: int) -> None:
            _U64.pack_into(buf, off, make(env, value))
        return _RESOURCE, own
    if isinstance(ty, (ResultT, OptionT, VariantT)) and isinstance(wty, (T.ResultType, T.OptionType, T.VariantType)):
        return _variant(ty, wty, where)
    return None


def _variant(ty: ResultT | OptionT | VariantT, wty: Any, where: str) -> tuple[int, Write] | None:
    w_cases = dict(wty._cases())
    cases: list[tuple[bytes, Any]] = []  # (name for a variant, payload: None | maker | (slot, writer))
    for name, case_ty in ty.case_types():
        if case_ty is None:
            cases.append((name.encode(), None))
        elif isinstance(case_ty, OwnT):
            cases.append((name.encode(), _maker(case_ty, f"{where}.{name}")))
        else:
            entry = _writer(case_ty, w_cases.get(name), f"{where}.{name}")
            if entry is None:
                return None
            cases.append((name.encode(), (bytes((entry[0],)) + bytes(_STRIDE - 1), entry[1])))
    is_result, is_option = isinstance(ty, ResultT), isinstance(ty, OptionT)
    at = 0 if is_option else _RESULT_AT if is_result else _VARIANT_AT
    kind = int((ffi.WASMTIME_COMPONENT_RESULT if is_result else ffi.WASMTIME_COMPONENT_OPTION if is_option
                else ffi.WASMTIME_COMPONENT_VARIANT).value)
    pack_ptr, pack_bool = _U64.pack_into, struct.Struct("<?").pack_into
    value_arr = lip._ARRAYS[_STRIDE.bit_length()]

    index_of = {name: i for i, (name, _) in enumerate(ty.case_types())}
    plain_dicts = not is_option

    def variant(env: Env, value: Any, buf: Any, base: int, off: int) -> None:
        if plain_dicts and value.__class__ is dict and len(value) == 1:
            (key, payload), = value.items()
            index = index_of.get(key)
            if index is None:
                index, payload = _plain_case(ty, value, where)  # its one-line error
        else:
            index, payload = _plain_case(ty, value, where)
        name, case = cases[index]
        c = _c
        assert c is not None
        if case is not None and not isinstance(case, tuple):  # a resource: made before anything is written
            any_ptr = case(env, payload)
            slot = bytes((_RESOURCE,)) + bytes(_VOFF - 1) + _U64.pack(any_ptr) + bytes(_STRIDE - _VOFF - 8)
        if is_result:
            pack_bool(buf, off, index == 0)
        elif not is_option:
            lip._lib.vec_new(base + off, len(name), name)  # type: ignore[union-attr]  # set by lower_in_place.apply(), which active() requires
        if case is None:
            return
        if not isinstance(case, tuple):
            pack_ptr(buf, off + at, c.val_new(ctypes.create_string_buffer(slot, _STRIDE)))
            return
        template, w = case
        heap = c.val_new(ctypes.create_string_buffer(template, _STRIDE))
        pack_ptr(buf, off + at, heap)  # owned by this value from here
        w(env, payload, value_arr.from_address(heap), heap, _VOFF)
    return kind, variant


# --- the function ----------------------------------------------------------------------------


class RawFunction:
    """One import bound at the C level: ``impl(plain args) -> plain result`` with its types."""

    def __init__(self, interface: str, name: str, params: list[Any], result: Any,
                 impl: Callable[[list[Any]], Any], on_failure: Callable[[Any, BaseException], None]) -> None:
        self.where = f"{interface}.{name}"
        self.interface, self.name = interface, name
        self.params, self.result, self.impl = params, result, impl
        self.readers: list[Read | None] = [_arg_reader(t, f"{self.where} args[{i}]") for i, t in enumerate(params)]
        self.on_failure = on_failure
        self.prepared = False
        self.slow: list[Any] = []
        self.write: tuple[int, Write] | None = None
        self.result_type: Any = None
        self.root_slot = _EMPTY

    def add_to(self, inst: Any, name: str) -> None:
        """Define it in the linker instance ``inst`` (a wasmtime-py ``LinkerInstance``)."""
        c = _c
        assert c is not None
        if native.available() and native.register(self, inst, name, c.add_func_raw):
            return  # its callback is C (native.py)
        idx = next(_ids)
        _FUNCTIONS[idx] = self
        encoded = name.encode("utf-8")
        err = c.add_func(ctypes.cast(inst.ptr(), ctypes.c_void_p), encoded, len(encoded), _callback, idx, _finalize)
        if err:
            _FUNCTIONS.pop(idx, None)
            raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))

    def _prepare(self, store: _Store, ty_raw: int) -> None:
        """wasmtime-py's types of the function (its first call), for the paths that need them."""
        with T.FuncType._from_ptr(ctypes.cast(ty_raw, ctypes.POINTER(ffi.wasmtime_component_func_type_t)),
                                  owner=store.get()) as fty:
            wtys = [t for _, t in fty.params]
            self.result_type = fty.result
        self.slow = [_slow_reader(t, w, f"{self.where} args[{i}]")
                     for i, (t, w) in enumerate(zip(self.params, wtys, strict=True))]
        if self.result is not None:
            self.write = _writer(self.result, self.result_type, f"{self.where} result")
            if self.write is not None:
                self.root_slot = lip._slot(self.write[0])
        self.prepared = True

    def call(self, context: int, ty_raw: int, args: int, nargs: int, results: int) -> int:
        ctx = CURRENT_CALL.get()
        if ctx is None:
            return _error(f"import {self.where} called outside an invocation")
        table = ctx.table
        store = _Store(context)  # a StoreContext only if a slow path asks for one
        try:
            if not self.prepared:
                self._prepare(store, ty_raw)
            if nargs != len(self.params):
                raise CodecError(self.where, f"expected {len(self.params)} arguments, got {nargs}")
            plain = []
            addr = args
            for read, slow in zip(self.readers, self.slow, strict=False):
                if read is None:
                    plain.append(slow(store, table, addr))
                else:
                    try:
                        plain.append(read(context, table, addr))
                    except _Slow:
                        plain.append(slow(store, table, addr))
                addr += _STRIDE
            out = self.impl(plain)
            if self.result is not None:
                self._lower(store, table, out, results)
            return 0
        except BaseException as e:  # noqa: BLE001 - every failure must trap the guest
            self.on_failure(ctx, e)
            return _error(f"import {self.where} failed: {type(e).__name__}: {e}")
        finally:
            store.end()

    def lower_slow(self, context: int, ty_raw: int, out: Any, results: int) -> None:
        """``out`` by the Python writers (native.py's callback, for a value it does not write)."""
        ctx = CURRENT_CALL.get()
        assert ctx is not None  # checked by the callback
        store = _Store(context)
        try:
            if not self.prepared:
                self._prepare(store, ty_raw)
            self._lower(store, ctx.table, out, results)
        finally:
            store.end()

    def _lower(self, store: _Store, table: ResourceTable, out: Any, results: int) -> None:
        entry = self.write
        if entry is None:  # wasmtime-py's conversion
            value = from_plain(self.result, out, resources=_ResourceBridge(store.get(), table),
                               path=f"{self.where} result")
            self.result_type.convert_to_c(store.get(), value,
                                          ctypes.pointer(ffi.wasmtime_component_val_t.from_address(results)))
            return
        kind, w = entry
        buf = _SLOT.from_address(results)
        copy = lip._lib.copy  # type: ignore[union-attr]  # set by lower_in_place.apply(), which active() requires
        if kind == _RESOURCE:  # nothing to undo: the handle is made before the slot is touched
            copy(results, _EMPTY, _STRIDE)
            w((store.raw, table), out, buf, results, _VOFF)
            buf[0] = _RESOURCE_KIND  # a valid handle in it now
            return
        copy(results, self.root_slot, _STRIDE)
        try:
            w((store.raw, table), out, buf, results, _VOFF)
        except BaseException:
            _c.val_delete(results)  # type: ignore[union-attr]  # _c is set by active(), before any function is added
            copy(results, _EMPTY, _STRIDE)  # as wasmtime-py leaves it
            raise
