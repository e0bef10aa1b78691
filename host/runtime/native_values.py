"""Plain values lowered into and lifted out of wasmtime's value slots in C (``_values.c``).

:mod:`.lower_in_place` and :mod:`.lift_in_place` write and read wasmtime's C structs from
Python (``struct``, ``ctypes`` calls into wasmtime per string, list and record): on a reused
trellis:http request, lowering the request record and lifting the response were ~40 % of
``Invoker.invoke``'s CPU, more than the guest's own code. Here the same values are written
and read by a C extension, from a type tree built once per WIT type:

* an export's arguments (:func:`lower`, used by ``Invoker``): a value of a type without
  variants, options, results, enums, flags or resources, given in the form the codec takes as
  it is (exact ``str``, ``bytes``, ``int`` in range, ``bool``, ``float``, ``list``, a ``dict``
  with exactly the record's fields, a tuple as a list or tuple), is written into a slot of its
  own and moved into the call's argument slot (:class:`NativeArg`, a ``call.RawArg``). Any other
  value answers None: the codec and :mod:`.lower_in_place` convert it as before (and name what
  is wrong with it), so what reaches the guest, and every error, is the same either way;
* a result, and an import's arguments (:func:`reader`, used by :mod:`.lift_in_place`): every
  type without flags or resources is read into the plain form lift_in_place's readers give.

The extension is compiled on first use with the machine's C compiler and Python headers into
``$XDG_CACHE_HOME/trellis/native`` (``~/.cache/trellis/native``) under a name keyed by the
source's hash and the Python version (:mod:`.native_build`), as :mod:`.wasi_http.native` is. Without a compiler, or
with ``TRELLIS_NATIVE_VALUES=0`` (``tuning.wasm.native_values``), the Python code serves. It
needs lower_in_place active (``TRELLIS_LOWER_IN_PLACE``) and its layout check.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import _types as T

from . import lower_in_place, native_build, native_val
from .call import RawArg
from .wit import ListT, Prim, RecordT, TupleT, WitType

__all__ = ["ENV", "NativeArg", "active", "lower", "lowerer", "reader"]

log = logging.getLogger(__name__)

ENV = "TRELLIS_NATIVE_VALUES"
#: on unless switched off (``tuning.wasm.native_values``: wasmtime_patches.switch)
enabled = True

SOURCE = Path(__file__).with_name("_values.c")
NAME = "_trellis_values"
_FUNCTIONS = {"vec_new": "wasm_byte_vec_new", "list_uninit": "wasmtime_component_vallist_new_uninit",
              "tuple_uninit": "wasmtime_component_valtuple_new_uninit",
              "record_uninit": "wasmtime_component_valrecord_new_uninit",
              "val_delete": "wasmtime_component_val_delete"}
_PRIMS = {"bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "f32", "f64", "char", "string"}
_state: dict[str, Any] = {}  # "module": the loaded extension, or None (tried and failed)


def _load() -> ModuleType:
    module = native_build.load(NAME, SOURCE, includes=(native_val.HEADER,))
    native_val.check(module)
    lib = ctypes.CDLL(str(ffi.filename))
    module.init({name: ctypes.cast(lib[c_name], ctypes.c_void_p).value for name, c_name in _FUNCTIONS.items()})
    return module


def module() -> ModuleType | None:
    """The extension (compiled and loaded once per process), or None when it cannot be."""
    return native_build.once(_state, _load, log, "native values unavailable (lower_in_place/lift_in_place serve)")


def active() -> bool:
    """Whether values go through the extension (switch on, lower_in_place active, extension loaded)."""
    return enabled and lower_in_place.active() and module() is not None


# --- type specs ------------------------------------------------------------------------


def spec_of(ty: Any) -> tuple[Any, ...] | None:
    """The extension's description of wasmtime-py component type ``ty``, or None (flags, resources)."""
    for cls, name in _VT_PRIMS:
        if isinstance(ty, cls):
            return (name,)
    if isinstance(ty, T.ListType):
        if ty._is_bytes():
            return ("bytes",)
        el = spec_of(ty.element)
        return None if el is None else ("list", el)
    if isinstance(ty, T.TupleType):
        els = [spec_of(t) for t in ty.elements]
        return None if any(e is None for e in els) else ("tuple", els)
    if isinstance(ty, T.RecordType):
        fields = [(name, spec_of(t)) for name, t in ty.fields]
        return None if any(s is None for _, s in fields) else ("record", fields)
    if isinstance(ty, T.EnumType):
        return ("enum",)
    if isinstance(ty, T.VariantType):
        cases = [(name, None if t is None else spec_of(t)) for name, t in ty.cases]
        if any(t is not None and s is None for (_, t), (_, s) in zip(ty.cases, cases, strict=True)):
            return None
        return ("variant", cases)
    if isinstance(ty, T.OptionType):
        inner = spec_of(ty.payload)
        return None if inner is None else ("option", inner, isinstance(ty.payload, T.OptionType))
    if isinstance(ty, T.ResultType):
        ok = None if ty.ok is None else spec_of(ty.ok)
        err = None if ty.err is None else spec_of(ty.err)
        if (ty.ok is not None and ok is None) or (ty.err is not None and err is None):
            return None
        return ("result", ok, err)
    return None


_VT_PRIMS = [(T.Bool, "bool"), (T.S8, "s8"), (T.U8, "u8"), (T.S16, "s16"), (T.U16, "u16"), (T.S32, "s32"),
             (T.U32, "u32"), (T.S64, "s64"), (T.U64, "u64"), (T.F32, "f32"), (T.F64, "f64"), (T.Char, "char"),
             (T.String, "string")]


def wit_spec(ty: WitType) -> tuple[Any, ...] | None:
    """The extension's description of WIT type ``ty`` when :func:`lower` writes its values, else None."""
    if isinstance(ty, Prim):
        return (ty.name,) if ty.name in _PRIMS else None
    if isinstance(ty, ListT):
        if ty.is_bytes:
            return ("bytes",)
        el = wit_spec(ty.element)
        return None if el is None else ("list", el)
    if isinstance(ty, TupleT):
        els = [wit_spec(t) for t in ty.elements]
        return None if any(e is None for e in els) else ("tuple", els)
    if isinstance(ty, RecordT):
        fields = [(name, wit_spec(t)) for name, t in ty.fields]
        return None if any(s is None for _, s in fields) else ("record", fields)
    return None  # enums, variants, options, results (the codec picks their case), flags, resources


# --- readers and writers --------------------------------------------------------------------

_READER = "_trellis_native_reader"
_LOWERER = "_trellis_native_lowerer"


def reader(ty: Any) -> Any:
    """A reader of wasmtime-py type ``ty``'s values, called as lift_in_place's are (``read(buf, off)``),
    or None (switched off, not built, or a type with flags or resources). Kept on the type."""
    if not active():
        return None
    d = ty.__dict__
    try:
        return d[_READER]
    except KeyError:
        s = spec_of(ty)
        found = d[_READER] = None if s is None else module().Type(s)  # type: ignore[union-attr]  # active(): loaded
        return found


def lowerer(ty: WitType) -> Any:
    """What :func:`lower` takes for WIT type ``ty`` (built once per type), or None when its values are
    not written natively."""
    if not active():
        return None
    cache = _lowerers
    try:
        return cache[ty]
    except KeyError:
        s = wit_spec(ty)
        found = cache[ty] = None if s is None else module().Type(s)  # type: ignore[union-attr]  # active(): loaded
        return found
    except TypeError:  # an unhashable type description: not kept
        s = wit_spec(ty)
        return None if s is None else module().Type(s)  # type: ignore[union-attr]  # active(): loaded


_lowerers: dict[Any, Any] = {}


class NativeArg(RawArg):
    """An argument written by the extension, moved into its slot by ``TypedCall``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def lower_into(self, context: int, slot: int) -> None:
        self.value.move_into(slot)


def lower(t: Any, value: Any) -> NativeArg | None:
    """``value`` (plain) written for type ``t`` (a :func:`lowerer`), or None when it is not in the form
    taken as it is: then the codec converts it (and says what is wrong with it)."""
    if not (enabled and lower_in_place.enabled):  # switched off since (tests compare the two ways)
        return None
    written = _state["module"].lower(t, value)  # (a lowerer exists: the module is loaded)
    return None if written is None else NativeArg(written)
