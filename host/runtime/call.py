"""Calling an exported function with its types read once.

wasmtime-py's ``component.Func.__call__`` asks the C API for the function's type
on every call and builds fresh ``ValType`` objects for every parameter; on a
reused instance that was about a quarter of a call's CPU. ``TypedCall`` reads
the types once per instance and then does exactly what ``__call__`` does.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, pointer
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime import component as wc
from wasmtime.component._enter import enter_wasm

from . import gil_hold, lift_in_place, lower_plain


class Lifted:
    """A result already in its plain form (``lift_in_place.py``): the codec has nothing to do."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class RawArg:
    """An argument that writes itself into its value slot (``lower_into(context, slot)``: the store
    context's and the slot's addresses) instead of going through wasmtime-py's conversion."""

    __slots__ = ()

    def lower_into(self, context: int, slot: int) -> None:
        raise NotImplementedError


_STRIDE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_move = ctypes.PyDLL(None).memmove  # keeping the GIL (ctypes.memmove releases it)
_move.argtypes, _move.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p


class PlainArg(RawArg):
    """An argument written from its plain form (``lower_plain.py``) into a value of its own when
    the call's arguments are checked; lowering moves it into its slot (the call frees it there).
    One never moved (the call failed before it) is freed when it goes."""

    __slots__ = ("raw",)

    def __init__(self, raw: ffi.wasmtime_component_val_t) -> None:
        self.raw: ffi.wasmtime_component_val_t | None = raw

    @classmethod
    def of(cls, ty: Any, plain: Any) -> PlainArg | None:
        """``plain`` of WIT type ``ty`` written, or None: ``from_plain`` must take it."""
        raw = ffi.wasmtime_component_val_t()
        return cls(raw) if lower_plain.lower_root(ty, plain, pointer(raw)) else None

    def lower_into(self, context: int, slot: int) -> None:
        raw, self.raw = self.raw, None
        if raw is None:
            raise RuntimeError("a plain argument lowered twice")
        _move(slot, ctypes.addressof(raw), _STRIDE)

    def __del__(self) -> None:
        raw = self.raw
        if raw is not None:
            self.raw = None
            ffi.wasmtime_component_val_delete(byref(raw))


class TypedCall:
    __slots__ = ("func", "param_tys", "result_ty")

    def __init__(self, func: wc.Func, store: Any) -> None:
        fty = func.type(store)
        self.func = func
        self.param_tys = [ty for _, ty in fty.params]
        self.result_ty = fty.result

    def __call__(self, store: Any, *params: Any) -> Any:
        if len(params) != len(self.param_tys):
            raise TypeError(f"wrong number of parameters provided: given {len(params)}, "
                            f"expected {len(self.param_tys)}")
        param_capi = (ffi.wasmtime_component_val_t * len(params))()
        n = 0
        try:
            context: int | None = None
            for ty, val in zip(self.param_tys, params, strict=True):  # (the counts are checked above)
                if isinstance(val, RawArg):
                    if context is None:
                        context = ctypes.cast(store._context(), ctypes.c_void_p).value or 0
                    val.lower_into(context, ctypes.addressof(param_capi) + n * _STRIDE)
                else:
                    ty.convert_to_c(store, val, pointer(param_capi[n]))
                n += 1
            result_ty = self.result_ty
            result_space = ffi.wasmtime_component_val_t() if result_ty is not None else None
            result_capi = byref(result_space) if result_space is not None else None
            func = self.func
            call = gil_hold.held(store) or ffi.wasmtime_component_func_call  # keeps the GIL, or releases it

            def run() -> ctypes._Pointer[ffi.wasmtime_error_t]:
                return call(byref(func._func), store._context(), param_capi, n,
                            result_capi, 1 if result_space is not None else 0)

            enter_wasm(run)
            if result_space is None:
                return None
            assert result_ty is not None
            if lift_in_place.active():
                read = lift_in_place.reader(result_ty)
                if read is not None:
                    return Lifted(lift_in_place.lift_root(read, result_space))
            return result_ty.convert_from_c(result_space)
        finally:
            for i in range(n):
                ffi.wasmtime_component_val_delete(byref(param_capi[i]))
