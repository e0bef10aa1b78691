"""Corrections to wasmtime-py's component value conversion, applied by :func:`apply`.

A process that runs Wasm calls :func:`apply` once when it starts (a worker does in
``trellis.host.workers.__main__``); :func:`~trellis.host.runtime.make_engine` refuses to
build an engine before. They rely on private parts of wasmtime-py listed, per patch, in
:mod:`trellis.host.runtime.wasmtime_reliance`, whose test fails when a wasmtime release
changes one; pyproject pins the wasmtime range they were tested with.

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
:func:`trellis.host.runtime.codec` uses to decide the case of an untagged value.

3. Types read once. wasmtime-py answers ``record.fields``, ``variant.cases``,
``list.element``, ``result.ok``, ... by asking the C API again on every access
and wrapping new Python objects, and its conversions ask on every value: an
``sql-value`` (a variant of six cases) in a row of a query result cost ~35 µs
to lift, mostly rebuilding its case list. A type never changes, so each answer
(and the Python classes a type accepts, and an untagged variant's case order)
is kept on the type object the first time. Long-lived roots (an export's
parameter and result types, kept per component) then carry their whole tree.

4. Host imports read their types once. wasmtime-py's callback for a host
function wraps the function's type afresh on every call and reads its
parameter and result types again (through 3, a new tree each time). A host
function marked with :data:`KEEP_TYPES` (set by ``trellis.host.runtime.imports`` on
imports whose signature has no resources: a resource type may belong to one
instance) keeps the types of its first call: a linker, and so each of its
host functions, serves one component, whose import types do not change.

5. Strings into C in one call. ``ffi.str_to_capi`` / ``bytes_to_capi`` (every
string value, record field name and variant case name lowered) built a new
ctypes array type per string, copied into it and then into the vector: ~4 µs a
string, a tenth of a reused HTTP call. ``wasm_byte_vec_new`` copies straight
from the ``bytes`` object (~1.3 µs), through a function pointer of its own whose
argument types accept ``bytes``.

6. Quick C calls keep the GIL. wasmtime-py loads its library with
``ctypes.CDLL``, whose functions release the GIL around every call, even one
that only builds or frees a value in a few nanoseconds. With several Wasm
threads in a worker, each release handed the GIL to another thread and each
return waited to get it back: one worker serving 20 full-app orders at once made
~190 context switches per order, and half its CPU was the kernel's. The
functions that only build, read or free values, types and resource handles
(:data:`QUICK`) are bound again through ``ctypes.PyDLL``, which keeps the GIL;
those that run Wasm, compile, instantiate, drop a guest resource or free a
store still release it, so other threads (the epoch ticker, the event loop)
run while Wasm does. ``TRELLIS_HOLD_GIL=0`` leaves wasmtime-py's bindings as
they are (for comparison).

7. Lists, tuples, records, variants, options and results are lowered in place:
see :mod:`trellis.host.runtime.lower_in_place` (``TRELLIS_LOWER_IN_PLACE=0`` turns it off).

8. An import's arguments are read straight to their plain form. A host function that
carries :data:`PLAIN_ARGS` (its twin taking the plain arguments) gets them from
:func:`trellis.host.runtime.lift_in_place.read_args` when every parameter type has a
reader, instead of wasmtime-py's objects (a ``Record`` per record, a ctypes view per
element, a C call per string) turned into the plain form by the codec afterwards. A
full-app order's SQL statements, its message and its log lines are such arguments.
Its answer is written into its result slot straight from the plain form, when that is
in the common form (:mod:`trellis.host.runtime.lower_plain`), rather than made into
wasmtime-py's objects by ``from_plain`` and lowered from those.
"""

from __future__ import annotations

import ctypes
import logging
import re
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _linker, _types
from wasmtime.component._enter import catch_exceptions

from . import lift_in_place, lower_in_place, lower_plain

log = logging.getLogger(__name__)

_VAL = ffi.wasmtime_component_val_t
_STRIDE = lower_in_place.STRIDE
_KIND_OFF = _VAL.kind.offset
_VALUE_OFF = lower_in_place.VALUE_OFF

#: attribute a host function sets (true) to have its parameter and result types kept (4)
KEEP_TYPES = "_trellis_keep_types"
_TYPES = "_trellis_types"
#: attribute of a host function: its twin taking ``(store, plain_args)``, the arguments already in
#: their plain form (8); set by ``trellis.host.runtime.imports`` where no argument holds a resource
PLAIN_ARGS = "_trellis_plain_args"
_READS = "_trellis_arg_readers"

HOLD_GIL_ENV = "TRELLIS_HOLD_GIL"
#: wasmtime-py's own bindings of the functions 6 replaced (name -> function), to put back; and ours
_released: dict[str, Any] = {}
_held: dict[str, Any] = {}

_original_to_c = _types.ListType.convert_to_c
_original_from_c = _types.ListType.convert_from_c
_applied: bool | None = None  # what apply() returned, once it ran


def _classes(ty: Any) -> frozenset[type]:
    """The Python classes a value of ``ty`` may have (wasmtime-py's ``add_classes``), kept."""
    memo = ty.__dict__.get("_trellis_classes")
    if memo is None:
        found: set[type] = set()
        ty.add_classes(found)
        memo = ty.__dict__["_trellis_classes"] = frozenset(found)
    return memo


def _matches_anything(ty: Any) -> bool:
    if ty is None:
        return False  # a payload-less case matches only None
    return object in _classes(ty)


def untagged_order(cases: list[Any]) -> list[Any]:
    """Cases in the order an untagged value is matched against them."""
    return sorted(cases, key=lambda c: _matches_anything(c[1]))


def untagged_cases(self: Any) -> list[tuple[str, Any, tuple[type, ...]]]:
    """(name, type, classes) of an untagged variant's cases, in matching order; kept."""
    memo = self.__dict__.get("_trellis_untagged")
    if memo is None:
        memo = self.__dict__["_trellis_untagged"] = [
            (name, ty, () if ty is None else tuple(_classes(ty))) for name, ty in untagged_order(self._cases())]
    return memo


def pick_case(self: Any, val: Any) -> tuple[str, Any, Any]:
    """(case name, case type, payload) of a variant, option or result value, as it is lowered."""
    if self._tagged():
        if not isinstance(val, _types.Variant):
            raise TypeError("expected Variant type")
        case = next(((name, ty) for name, ty in self._cases() if name == val.tag), None)
        payload = val.payload if case is not None else None
    else:
        case = next(((name, ty) for name, ty, classes in untagged_cases(self)
                     if (val is None if ty is None else isinstance(val, classes))), None)
        payload = val
    if case is None:
        raise ValueError("value not valid for this variant")
    return case[0], case[1], payload


def _lower(self: Any, store: Any, val: Any) -> Any:
    name, ty, payload = pick_case(self, val)
    if ty is None:
        return (name, None)
    raw = ffi.wasmtime_component_val_t()
    ty.convert_to_c(store, payload, ctypes.pointer(raw))
    return (name, ffi.wasmtime_component_val_new(ctypes.byref(raw)))


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
        lower_in_place.write_byte_list(ctypes.addressof(raw.data.contents), data)
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


#: per class: the properties and argument-less methods whose answers are kept on the type
_KEPT = {
    "ListType": ("element", "_is_bytes"),
    "RecordType": ("fields",),
    "TupleType": ("elements",),
    "VariantType": ("cases", "_cases"),
    "OptionType": ("payload", "_cases"),
    "ResultType": ("ok", "err", "_cases"),
    "EnumType": ("names", "names_count"),
    "FlagsType": ("names",),
    "VariantLikeType": ("_tagged",),
}


def _kept(fn: Any, key: str) -> Any:
    def get(self: Any) -> Any:
        d = self.__dict__
        try:
            return d[key]
        except KeyError:
            value = d[key] = fn(self)
            return value
    get.__doc__ = fn.__doc__
    return get


def _keep_types() -> bool:
    """Install 3 (once). False when wasmtime-py's classes are not the expected ones."""
    if getattr(_types, "_trellis_kept", False):
        return True
    plan = []
    for cls_name, names in _KEPT.items():
        cls = getattr(_types, cls_name, None)
        if cls is None:
            return False
        for name in names:
            attr = cls.__dict__.get(name)
            if isinstance(attr, property) and attr.fget is not None and attr.fset is None:
                plan.append((cls, name, property(_kept(attr.fget, f"_trellis_{name}"))))
            elif callable(attr):
                plan.append((cls, name, _kept(attr, f"_trellis_{name}")))
            else:
                return False
    for cls, name, value in plan:
        setattr(cls, name, value)
    _types._trellis_kept = True  # type: ignore[attr-defined]  # our mark on wasmtime-py's module
    return True


@ffi.wasmtime_component_func_callback_t
def _func_impl(idx, context, ty_raw, args, nargs, results, nresults):
    """wasmtime-py's ``_linker.func_impl``, with the types of a :data:`KEEP_TYPES` function kept."""
    def run(store: Any) -> None:
        func = _linker.FUNCTIONS.get(idx or 0)
        types = getattr(func, _TYPES, None)
        if types is None:
            with _types.FuncType._from_ptr(ty_raw, owner=store) as fty:
                types = ([ty for _, ty in fty.params], fty.result)
            if getattr(func, KEEP_TYPES, False):
                setattr(func, _TYPES, types)
        param_tys, result_ty = types
        assert len(param_tys) == nargs and nresults == (0 if result_ty is None else 1)
        plain = getattr(func, PLAIN_ARGS, None)
        if plain is not None and lower_in_place.active():
            reads = _arg_readers(func, param_tys)
            if reads is not None:  # the arguments read straight to their plain form (8), the
                # result written from its plain form into its slot when it can be (lower_plain.py)
                result = plain(store, lift_in_place.read_args(reads, args, nargs), results)
                if result is lower_plain.WRITTEN:
                    return
            else:
                result = func(store, *[ty.convert_from_c(args[i]) for i, ty in enumerate(param_tys)])
        else:
            result = func(store, *[ty.convert_from_c(args[i]) for i, ty in enumerate(param_tys)])
        if result_ty is None:
            assert result is None
        else:
            result_ty.convert_to_c(store, result, results)
    return catch_exceptions(context, run)


def _arg_readers(func: Any, param_tys: list[Any]) -> list[Any] | None:
    """The readers of ``func``'s arguments (kept on it with its types), or None when one has none."""
    kept: Any = getattr(func, _READS, False)
    if kept is not False:
        return kept  # what was set below: readers or None
    reads = [lift_in_place.reader(ty) for ty in param_tys]
    found: list[Any] | None = None if any(r is None for r in reads) else reads
    if getattr(func, KEEP_TYPES, False):
        setattr(func, _READS, found)
    return found


def _keep_import_types() -> bool:
    """Install 4. False when wasmtime-py's linker is not the one this was written for."""
    if not all(hasattr(_linker, n) for n in ("func_impl", "FUNCTIONS")) or not hasattr(_types, "FuncType"):
        return False
    _linker.func_impl = _func_impl  # add_func passes the module's func_impl to the C API
    return True


def _fast_byte_vecs() -> bool:
    """Install 5. False when the C API or wasmtime-py's helpers are not the expected ones."""
    if getattr(ffi, "_trellis_fast_vecs", False):
        return True
    if not all(hasattr(ffi, n) for n in ("str_to_capi", "bytes_to_capi", "wasm_byte_vec_t", "dll")):
        return False
    try:
        new = _library()["wasm_byte_vec_new"]  # a function object of our own: its argtypes are ours
    except (AttributeError, KeyError):
        return False
    new.restype = None
    new.argtypes = [ctypes.POINTER(ffi.wasm_byte_vec_t), ctypes.c_size_t, ctypes.c_char_p]
    vec_t, byref = ffi.wasm_byte_vec_t, ctypes.byref

    def bytes_to_capi(s: bytes | bytearray) -> Any:
        if s.__class__ is not bytes:
            if not isinstance(s, (bytes, bytearray)):
                raise TypeError("expected bytes or bytearray")
            s = bytes(s)
        vec = vec_t()
        new(byref(vec), len(s), s)
        return vec

    def str_to_capi(s: str) -> Any:
        if s.__class__ is not str and not isinstance(s, str):
            raise TypeError("expected a string")
        b = s.encode("utf8")
        vec = vec_t()
        new(byref(vec), len(b), b)
        return vec

    probe = str_to_capi("ok\x00é")
    try:
        if ffi.to_str(probe) != "ok\x00é":
            return False
    finally:
        ffi.wasm_byte_vec_delete(byref(probe))
    ffi.bytes_to_capi = bytes_to_capi
    ffi.str_to_capi = str_to_capi
    ffi._trellis_fast_vecs = True  # type: ignore[attr-defined]  # our mark on wasmtime-py's module
    return True


def _library() -> ctypes.CDLL:
    """wasmtime's library again, through ``PyDLL``: calls keep the GIL (6)."""
    return ctypes.PyDLL(str(ffi.filename))


#: C functions that only build, read or free values, types and handles: quick, never run Wasm (6)
QUICK = re.compile(r"^(wasm_byte_vec_|wasm_name_|wasmtime_component_val|wasmtime_component_resource_(type|host)_"
                    r"|wasmtime_component_resource_any_(type|clone|owned|delete|to_host)$"
                    r"|wasmtime_component_[a-z]+_type_|wasmtime_component_func_type"
                    r"|wasmtime_error_(message|delete)$|wasmtime_store_context$"
                    r"|wasmtime_context_set_epoch_deadline$|wasmtime_component_instance_get_)")


def _hold_gil() -> int:
    """Install 6. How many of wasmtime-py's C functions now keep the GIL (0: not recognised)."""
    if getattr(ffi, "_trellis_gil_held", 0):
        return int(vars(ffi)["_trellis_gil_held"])
    if _released:  # held once, then released: bound again as before
        from wasmtime import _bindings as bound

        for name in _released:
            setattr(bound, name, _held[name])
        ffi._trellis_gil_held = len(_released)  # type: ignore[attr-defined]  # our mark on wasmtime-py's module
        return len(_released)
    from wasmtime import _bindings

    if not hasattr(ffi, "filename"):
        return 0
    lib = _library()
    count = 0
    for name, fn in list(vars(_bindings).items()):
        cname = name[1:]
        if not (name.startswith("_") and isinstance(fn, ctypes._CFuncPtr) and QUICK.match(cname)):  # type: ignore[attr-defined]  # ctypes' function class is private
            continue
        held = lib[cname]
        held.restype, held.argtypes = fn.restype, fn.argtypes
        _released[name], _held[name] = fn, held
        setattr(_bindings, name, held)
        count += 1
    ffi._trellis_gil_held = count  # type: ignore[attr-defined]  # our mark on wasmtime-py's module
    return count


def hold_gil(on: bool) -> None:
    """6 on (the default once applied) or off: wasmtime-py's own bindings, which release the GIL
    on every call (``TRELLIS_HOLD_GIL=0``, for comparison). Call before any Wasm runs."""
    if on:
        _hold_gil()
        return
    from wasmtime import _bindings

    for name, fn in _released.items():
        setattr(_bindings, name, fn)
    ffi._trellis_gil_held = 0  # type: ignore[attr-defined]  # our mark on wasmtime-py's module


def switch(*, hold_gil_on: bool = True, lower_in_place_on: bool = True, wasi_http_fast_on: bool = True,
           wasi_http_native_on: bool = True, wasi_http_native_state_on: bool = True,
           native_values_on: bool = True, native_ticker_on: bool = True, wasm_hold_gil_on: bool = False,
           lower_plain_on: bool = True, wasm_hold_gil_slice_ms: float = 0.0) -> None:
    """Set the switches of the corrections above (a worker's ``tuning.wasm``, host/tuning.py):
    all on by default (but ``wasm_hold_gil``, :mod:`.gil_hold`); off only to compare. Call at start,
    before any component is loaded."""
    from . import engine, gil_hold, lower_plain, native_values
    from .wasi_http import fastcall, native

    hold_gil(hold_gil_on)
    lower_in_place.enabled = lower_in_place_on
    fastcall.enabled = wasi_http_fast_on
    native.enabled = wasi_http_native_on
    native.state_enabled = wasi_http_native_state_on
    native_values.enabled = native_values_on
    engine.native_ticker = native_ticker_on
    gil_hold.enabled = wasm_hold_gil_on
    gil_hold.slice_ms = wasm_hold_gil_slice_ms
    lower_plain.enabled = lower_plain_on


def _layout_ok() -> bool:
    return _STRIDE >= 16 and _KIND_OFF == 0 and ctypes.sizeof(_VAL.kind.size * ctypes.c_char) == 1 \
        and _VALUE_OFF >= 1 and hasattr(_types.ListType, "_is_bytes")


def applied() -> bool:
    """Whether :func:`apply` ran in this process."""
    return _applied is not None


def apply() -> bool:
    """Install the corrections above (idempotent). Returns whether the bulk byte path is active."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    _warn_if_untested()
    if hasattr(_types, "VariantLikeType") and hasattr(_types.VariantLikeType, "_lower"):
        _types.VariantLikeType._lower = _lower  # type: ignore[method-assign]  # this is the patch
    if not _keep_types():
        log.warning("wasmtime-py component types not recognised; their shapes are read on every value")
    elif not _keep_import_types():
        log.warning("wasmtime-py linker not recognised; host imports read their types on every call")
    if not _hold_gil():
        log.warning("wasmtime-py bindings not recognised; every C call releases the GIL")
    if not _fast_byte_vecs():
        log.warning("wasmtime-py byte vectors not recognised; strings are lowered the slow way")
    if not _layout_ok():
        log.warning("wasmtime-py component value layout not recognised; list<u8> stays per-element")
        return False
    _types.ListType.convert_to_c = _to_c  # type: ignore[method-assign]  # this is the patch
    _types.ListType.convert_from_c = _from_c  # type: ignore[method-assign]  # this is the patch
    if lower_in_place.apply(_library()):
        for cls in (_types.ListType, _types.TupleType, _types.RecordType, _types.VariantType,
                    _types.OptionType, _types.ResultType):
            cls.convert_to_c = _in_place(cls.convert_to_c)  # type: ignore[method-assign]  # this is the patch
    return True


def _warn_if_untested() -> None:
    from . import wasmtime_reliance as reliance

    if reliance.installed_wasmtime() == reliance.TESTED_WASMTIME:
        return
    for line in reliance.changes():
        log.warning("untested wasmtime: %s", line)


def _in_place(original: Any) -> Any:
    """7: a container or variant is lowered by :mod:`trellis.host.runtime.lower_in_place`, unless its
    type holds what only wasmtime-py lowers (a resource, flags)."""
    def convert_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
        if not lower_in_place.lower_root(self, store, val, ptr):
            original(self, store, val, ptr)
    return convert_to_c
