"""wasmtime's component value as the runtime's C extensions are compiled to see it (``_wasmtime_val.h``,
included by ``_values.c`` and ``wasi_http/_native.c``), checked against wasmtime-py's ctypes structs
and constants when an extension loads: a wasmtime whose layout differs is refused, and the Python
code serves."""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import ModuleType

from wasmtime import _ffi as ffi

from . import lower_in_place

HEADER = Path(__file__).with_name("_wasmtime_val.h")
KINDS = ("BOOL", "S8", "U8", "S16", "U16", "S32", "U32", "S64", "U64", "F32", "F64", "CHAR", "STRING", "LIST",
         "RECORD", "TUPLE", "VARIANT", "ENUM", "OPTION", "RESULT", "FLAGS", "RESOURCE")
"""The header's K_* in order: WASMTIME_COMPONENT_* 0, 1, ..."""


def check(module: ModuleType) -> None:
    """Raise unless ``module.layout()`` and the header's kinds are wasmtime-py's."""
    entry = ffi.wasmtime_component_valrecord_entry_t
    want = {"stride": lower_in_place.STRIDE, "value": lower_in_place.VALUE_OFF,
            "result_val": ffi.wasmtime_component_valresult_t.val.offset,  # type: ignore[attr-defined]  # ctypes field descriptors
            "variant_val": ffi.wasmtime_component_valvariant_t.val.offset,  # type: ignore[attr-defined]  # as above
            "vec_data": ffi.wasmtime_component_vallist_t.data.offset,  # type: ignore[attr-defined]  # as above
            "entry": ctypes.sizeof(entry), "entry_val": entry.val.offset}
    layout = module.layout()
    if layout != want:
        raise RuntimeError(f"wasmtime's value layout {want} is not the one compiled for ({layout})")
    if [int(getattr(ffi, f"WASMTIME_COMPONENT_{k}").value) for k in KINDS] != list(range(len(KINDS))):
        raise RuntimeError("wasmtime's value kinds are not the ones compiled for")
