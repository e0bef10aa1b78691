"""What Trellis's changes to wasmtime-py rely on, and a check that the installed wasmtime still has it.

Trellis corrects and speeds up wasmtime-py in process (:mod:`.wasmtime_patches` 1-6,
:mod:`.lower_in_place`, :mod:`.lift_in_place`, :mod:`.call`, :mod:`.wasi_http.fastcall`) through its private
modules: it replaces or mirrors private Python functions, writes wasmtime's C structs at
offsets it reads from wasmtime-py's ctypes declarations, and calls C functions with argument
types of its own. All of that was written against one wasmtime release
(:data:`TESTED_WASMTIME`; pyproject pins the range) and can break silently on another.

:data:`RELIES_ON` lists, per patch, every private thing it leans on; :data:`FINGERPRINTS` holds
a digest of each as the tested release has it (a Python function's syntax tree, a struct's
fields and offsets, a C function's argument and result types, a constant's value).
:func:`changes` names each patch whose ground moved; ``tests/runtime/test_wasmtime_reliance.py``
fails with those names. After re-reading a patch against the new release (and fixing it),
``python -m trellis.host.runtime.wasmtime_reliance`` prints the table for the new one.

A reference is ``py:MODULE:QUALNAME`` (a function or method, read from the source file
without importing or running it), ``c:NAME`` (a C function as ``wasmtime._bindings``
declares it), ``ctype:NAME`` (a struct, union or callback type in ``wasmtime._ffi``),
``const:NAME`` (a value in ``wasmtime._ffi``) or ``quick:`` (the C functions patch 6
rebinds, with their types).
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import importlib.metadata
import importlib.util
from functools import cache
from typing import Any

__all__ = ["FINGERPRINTS", "RELIES_ON", "TESTED_WASMTIME", "changes", "fingerprint", "installed_wasmtime"]

TESTED_WASMTIME = "51.0.0"

_T = "wasmtime.component._types"

_VALUE_LAYOUT = (
    "ctype:wasmtime_component_val_t", "ctype:wasmtime_component_valunion_t", "ctype:wasmtime_component_vallist_t",
    "ctype:wasmtime_component_valtuple_t", "ctype:wasmtime_component_valrecord_t",
    "ctype:wasmtime_component_valrecord_entry_t", "ctype:wasmtime_component_valvariant_t",
    "ctype:wasmtime_component_valresult_t", "ctype:wasm_byte_vec_t",
)
_KINDS = tuple(f"const:WASMTIME_COMPONENT_{k}" for k in (
    "BOOL", "S8", "U8", "S16", "U16", "S32", "U32", "S64", "U64", "F32", "F64", "CHAR", "STRING", "LIST", "RECORD",
    "TUPLE", "VARIANT", "ENUM", "OPTION", "RESULT", "FLAGS", "RESOURCE"))

#: patch -> what it relies on (see the module docstring for the reference forms)
RELIES_ON: dict[str, tuple[str, ...]] = {
    "wasmtime_patches 1 (list<u8> in bulk)": (
        f"py:{_T}:ListType.convert_to_c", f"py:{_T}:ListType.convert_from_c", f"py:{_T}:ListType._is_bytes",
        "c:wasmtime_component_vallist_new_uninit", "c:wasmtime_component_valtuple_delete", *_VALUE_LAYOUT,
        "const:WASMTIME_COMPONENT_LIST",
    ),
    "wasmtime_patches 2 (case order of untagged variants)": (
        f"py:{_T}:VariantLikeType._lower", f"py:{_T}:VariantLikeType._tagged", f"py:{_T}:VariantLikeType.add_classes",
        f"py:{_T}:VariantType.convert_to_c", f"py:{_T}:OptionType.convert_to_c",
        f"py:{_T}:ResultType.convert_to_c", f"py:{_T}:Variant", "c:wasmtime_component_val_new",
    ),
    "wasmtime_patches 3 (types read once)": (
        f"py:{_T}:ListType.element", f"py:{_T}:ListType._is_bytes", f"py:{_T}:RecordType.fields",
        f"py:{_T}:TupleType.elements", f"py:{_T}:VariantType.cases", f"py:{_T}:VariantType._cases",
        f"py:{_T}:OptionType.payload", f"py:{_T}:OptionType._cases", f"py:{_T}:ResultType.ok",
        f"py:{_T}:ResultType.err", f"py:{_T}:ResultType._cases", f"py:{_T}:EnumType.names",
        f"py:{_T}:EnumType.names_count", f"py:{_T}:FlagsType.names", f"py:{_T}:VariantLikeType._tagged",
        f"py:{_T}:ValType.add_classes",
    ),
    "wasmtime_patches 4 (host imports read their types once)": (
        "py:wasmtime.component._linker:func_impl", "py:wasmtime.component._linker:LinkerInstance.add_func",
        "py:wasmtime._slab:Slab.get", f"py:{_T}:FuncType._from_ptr", f"py:{_T}:FuncType.params",
        f"py:{_T}:FuncType.result", "py:wasmtime.component._enter:catch_exceptions",
        "ctype:wasmtime_component_func_callback_t",
    ),
    "wasmtime_patches 5 (strings into C in one call)": (
        "py:wasmtime._ffi:str_to_capi", "py:wasmtime._ffi:bytes_to_capi", "py:wasmtime._ffi:to_str",
        "c:wasm_byte_vec_new", "c:wasm_byte_vec_delete", "ctype:wasm_byte_vec_t",
    ),
    "wasmtime_patches 6 (quick C calls keep the GIL)": ("quick:",),
    "lower_in_place (values lowered in place)": (
        f"py:{_T}:ListType.convert_to_c", f"py:{_T}:TupleType.convert_to_c", f"py:{_T}:RecordType.convert_to_c",
        f"py:{_T}:VariantType.convert_to_c", f"py:{_T}:OptionType.convert_to_c", f"py:{_T}:ResultType.convert_to_c",
        f"py:{_T}:EnumType.convert_to_c", f"py:{_T}:String.convert_to_c", f"py:{_T}:Char.convert_to_c",
        "c:wasm_byte_vec_new", "c:wasmtime_component_vallist_new_uninit", "c:wasmtime_component_valtuple_new_uninit",
        "c:wasmtime_component_valrecord_new_uninit", "c:wasmtime_component_val_new",
        "c:wasmtime_component_val_delete", *_VALUE_LAYOUT, *_KINDS,
    ),
    "lift_in_place (results read straight to their plain form)": (
        f"py:{_T}:ListType.convert_from_c", f"py:{_T}:TupleType.convert_from_c", f"py:{_T}:RecordType.convert_from_c",
        f"py:{_T}:String.convert_from_c", f"py:{_T}:Char.convert_from_c", f"py:{_T}:F32.convert_from_c",
        f"py:{_T}:ListType._is_bytes", f"py:{_T}:RecordType.fields", f"py:{_T}:TupleType.elements",
        f"py:{_T}:ListType.element", "py:wasmtime._ffi:to_str", "c:wasmtime_component_val_delete", *_VALUE_LAYOUT,
        f"py:{_T}:VariantType.cases", f"py:{_T}:OptionType.payload", f"py:{_T}:ResultType.ok",
        f"py:{_T}:ResultType.err",
        f"py:{_T}:EnumType.convert_from_c", f"py:{_T}:VariantType.convert_from_c",
        f"py:{_T}:OptionType.convert_from_c", f"py:{_T}:ResultType.convert_from_c",
        "ctype:wasmtime_component_valresult_t", "py:wasmtime.component._linker:func_impl",
    ),
    "native_values (arguments written and results read in C: _values.c)": (
        "c:wasm_byte_vec_new", "c:wasmtime_component_vallist_new_uninit", "c:wasmtime_component_valtuple_new_uninit",
        "c:wasmtime_component_valrecord_new_uninit", "c:wasmtime_component_val_delete",
        f"py:{_T}:ListType._is_bytes", f"py:{_T}:RecordType.fields", f"py:{_T}:TupleType.elements",
        f"py:{_T}:ListType.element", f"py:{_T}:VariantType.cases", f"py:{_T}:OptionType.payload",
        f"py:{_T}:ResultType.ok", f"py:{_T}:ResultType.err", "ctype:wasmtime_component_valresult_t",
        *_VALUE_LAYOUT, *_KINDS,
    ),
    "call.TypedCall (exports called with their types read once)": (
        "py:wasmtime.component._func:Func.__call__", "py:wasmtime.component._enter:enter_wasm",
        "c:wasmtime_component_func_call", "c:wasmtime_component_val_delete", "ctype:wasmtime_component_val_t",
    ),
    "wasi_http.fastcall (wasi:http host functions on the C API)": (
        "c:wasmtime_component_resource_any_to_host", "c:wasmtime_component_resource_host_rep",
        "c:wasmtime_component_resource_host_type", "c:wasmtime_component_resource_host_delete",
        "c:wasmtime_component_resource_host_new", "c:wasmtime_component_resource_host_to_any",
        "c:wasmtime_component_resource_any_delete", "c:wasm_byte_vec_delete", "c:wasmtime_component_valtuple_delete",
        "c:wasmtime_component_val_new", "c:wasmtime_component_val_delete",
        "c:wasmtime_component_linker_instance_add_resource", "c:wasmtime_component_linker_instance_add_func",
        "ctype:wasmtime_component_func_callback_t", "ctype:wasmtime_component_resource_destructor_t",
        "py:wasmtime._managed:Managed._consume", "py:wasmtime._error:WasmtimeError._from_ptr",
        "py:wasmtime._store:StoreContext.__init__", f"py:{_T}:FuncType._from_ptr",
        "py:wasmtime.component._linker:LinkerInstance.add_resource", *_VALUE_LAYOUT, *_KINDS,
    ),
    "wasi_http.native (wasi:http host functions' callbacks in C: _native.c)": (
        "c:wasmtime_component_resource_any_to_host", "c:wasmtime_component_resource_host_rep",
        "c:wasmtime_component_resource_host_type", "c:wasmtime_component_resource_host_delete",
        "c:wasmtime_component_resource_host_new", "c:wasmtime_component_resource_host_to_any",
        "c:wasmtime_component_resource_any_delete", "c:wasm_byte_vec_new", "c:wasm_byte_vec_delete",
        "c:wasmtime_component_vallist_new_uninit", "c:wasmtime_component_vallist_delete",
        "c:wasmtime_component_valtuple_new_uninit", "c:wasmtime_component_valtuple_delete",
        "c:wasmtime_component_val_new", "c:wasmtime_component_val_delete", "c:wasmtime_error_new",
        "c:wasmtime_component_linker_instance_add_resource", "c:wasmtime_component_linker_instance_add_func",
        "ctype:wasmtime_component_func_callback_t", "ctype:wasmtime_component_resource_destructor_t",
        *_VALUE_LAYOUT, *_KINDS,
    ),
    "gil_hold (a Wasm call keeps the GIL, handed over at every epoch tick)": (
        "c:wasmtime_component_func_call", "c:wasmtime_store_epoch_deadline_callback", "c:wasmtime_error_new",
        "const:wasmtime_update_deadline_kind_t", "py:wasmtime._managed:Managed.ptr",
    ),
}

#: reference -> digest, as wasmtime TESTED_WASMTIME has it (printed by ``python -m`` this module)
FINGERPRINTS: dict[str, str] = {
    'c:wasm_byte_vec_delete': '5817af2e7bcb8549',
    'c:wasm_byte_vec_new': 'f303460f410ae70b',
    'c:wasmtime_component_func_call': 'da38ae463ff747e4',
    'c:wasmtime_component_linker_instance_add_func': 'c05dd0e623ebc710',
    'c:wasmtime_component_linker_instance_add_resource': '6ef3c43f1e649ee1',
    'c:wasmtime_component_resource_any_delete': '797f86dce43a3395',
    'c:wasmtime_component_resource_any_to_host': '552d24c195b77e17',
    'c:wasmtime_component_resource_host_delete': 'ce9b86273581ff48',
    'c:wasmtime_component_resource_host_new': '6bba363a61fb7057',
    'c:wasmtime_component_resource_host_rep': '13cbbebca21867f5',
    'c:wasmtime_component_resource_host_to_any': 'e2a98ddb98e3ca17',
    'c:wasmtime_component_resource_host_type': '13cbbebca21867f5',
    'c:wasmtime_component_val_delete': '4d0e6372f612d46c',
    'c:wasmtime_component_val_new': '43a199a228744293',
    'c:wasmtime_component_vallist_delete': '64a28dc1a55be08b',
    'c:wasmtime_component_vallist_new_uninit': 'cf5a49c1a91060f4',
    'c:wasmtime_component_valrecord_new_uninit': 'b33043db574e224d',
    'c:wasmtime_component_valtuple_delete': '077272236474bdbc',
    'c:wasmtime_component_valtuple_new_uninit': 'de1a3f65c6bc8aac',
    'c:wasmtime_error_new': '1c9b3102f332b7d5',
    'const:WASMTIME_COMPONENT_BOOL': '5feceb66ffc86f38',
    'const:WASMTIME_COMPONENT_CHAR': '4fc82b26aecb47d2',
    'const:WASMTIME_COMPONENT_ENUM': '4523540f1504cd17',
    'const:WASMTIME_COMPONENT_F32': '19581e27de7ced00',
    'const:WASMTIME_COMPONENT_F64': '4a44dc15364204a8',
    'const:WASMTIME_COMPONENT_FLAGS': 'f5ca38f748a1d6ea',
    'const:WASMTIME_COMPONENT_LIST': '3fdba35f04dc8c46',
    'const:WASMTIME_COMPONENT_OPTION': '4ec9599fc203d176',
    'const:WASMTIME_COMPONENT_RECORD': '8527a891e2241369',
    'const:WASMTIME_COMPONENT_RESOURCE': '6f4b6612125fb3a0',
    'const:WASMTIME_COMPONENT_RESULT': '9400f1b21cb527d7',
    'const:WASMTIME_COMPONENT_S16': '4e07408562bedb8b',
    'const:WASMTIME_COMPONENT_S32': 'ef2d127de37b942b',
    'const:WASMTIME_COMPONENT_S64': '7902699be42c8a8e',
    'const:WASMTIME_COMPONENT_S8': '6b86b273ff34fce1',
    'const:WASMTIME_COMPONENT_STRING': '6b51d431df5d7f14',
    'const:WASMTIME_COMPONENT_TUPLE': 'e629fa6598d73276',
    'const:WASMTIME_COMPONENT_U16': '4b227777d4dd1fc6',
    'const:WASMTIME_COMPONENT_U32': 'e7f6c011776e8db7',
    'const:WASMTIME_COMPONENT_U64': '2c624232cdd22177',
    'const:WASMTIME_COMPONENT_U8': 'd4735e3a265e16ee',
    'const:WASMTIME_COMPONENT_VARIANT': 'b17ef6d19c7a5b1e',
    'ctype:wasm_byte_vec_t': 'f953343caf838b8b',
    'ctype:wasmtime_component_func_callback_t': '2c486b7076e4a67f',
    'ctype:wasmtime_component_resource_destructor_t': '7bfc0d988879bf4f',
    'ctype:wasmtime_component_val_t': '2c3a5612d5aaebcd',
    'ctype:wasmtime_component_vallist_t': 'c69f3aee5719ee53',
    'ctype:wasmtime_component_valrecord_entry_t': '6a34db83ebe1eeb8',
    'ctype:wasmtime_component_valrecord_t': 'e85ed675ae8ac1b9',
    'ctype:wasmtime_component_valresult_t': '3693056a81f3b092',
    'ctype:wasmtime_component_valtuple_t': 'c69f3aee5719ee53',
    'ctype:wasmtime_component_valunion_t': '14850f2c901ca84e',
    'ctype:wasmtime_component_valvariant_t': '65b36829208615bb',
    'py:wasmtime._error:WasmtimeError._from_ptr': '03852c2a058e1d69',
    'py:wasmtime._ffi:bytes_to_capi': '6e532febeb4af42a',
    'py:wasmtime._ffi:str_to_capi': '1614deb0c08e3f96',
    'py:wasmtime._ffi:to_str': '2c0641c22241cbb8',
    'py:wasmtime._managed:Managed._consume': '07ff40f57d0184cb',
    'py:wasmtime._slab:Slab.get': '2bb72ad6b7803d62',
    'py:wasmtime._store:StoreContext.__init__': '3fdb3fc3d3fc8d96',
    'py:wasmtime.component._enter:catch_exceptions': '0021c2ec1b3e102e',
    'py:wasmtime.component._enter:enter_wasm': '7d5e5d0d9bcaddda',
    'py:wasmtime.component._func:Func.__call__': 'ea9f9ac97fbc34c1',
    'py:wasmtime.component._linker:LinkerInstance.add_func': 'fe222b35541d1243',
    'py:wasmtime.component._linker:LinkerInstance.add_resource': '7c0f773dcd3e2b20',
    'py:wasmtime.component._linker:func_impl': 'b82bd2b279b32505',
    'py:wasmtime.component._types:Char.convert_from_c': 'd39f762fd80cc4e8',
    'py:wasmtime.component._types:Char.convert_to_c': 'a218b7964b4e582f',
    'py:wasmtime.component._types:EnumType.convert_to_c': '62d629418ca78509',
    'py:wasmtime.component._types:EnumType.names': '57ccb91f357aec1f',
    'py:wasmtime.component._types:EnumType.names_count': '4820672919969838',
    'py:wasmtime.component._types:F32.convert_from_c': '4da942b8a536e016',
    'py:wasmtime.component._types:FlagsType.names': 'b51fdf142157405a',
    'py:wasmtime.component._types:FuncType._from_ptr': 'da0f375798db72d1',
    'py:wasmtime.component._types:FuncType.params': '3c7d245a16530a89',
    'py:wasmtime.component._types:FuncType.result': 'cf396d6c796064a5',
    'py:wasmtime.component._types:ListType._is_bytes': '396c55d6c3fc451d',
    'py:wasmtime.component._types:ListType.convert_from_c': '4b36f4294963778b',
    'py:wasmtime.component._types:EnumType.convert_from_c': '99ca21ef6b1178d9',
    'py:wasmtime.component._types:OptionType.convert_from_c': 'f6904d6c0e3a14fc',
    'py:wasmtime.component._types:ResultType.convert_from_c': '6aa387e951ca138d',
    'py:wasmtime.component._types:VariantType.convert_from_c': '8436df873fb89d8b',
    'py:wasmtime.component._types:ListType.convert_to_c': 'd96c7a3b2ce332a6',
    'py:wasmtime.component._types:ListType.element': '3385348cd53aad1f',
    'py:wasmtime.component._types:OptionType._cases': '8ad3436257f76814',
    'py:wasmtime.component._types:OptionType.convert_to_c': '06707f1bf43aa73b',
    'py:wasmtime.component._types:OptionType.payload': 'd1ab6593bef335af',
    'py:wasmtime.component._types:RecordType.convert_from_c': '1b20fe9e94d62e74',
    'py:wasmtime.component._types:RecordType.convert_to_c': 'eb134ccb333477d6',
    'py:wasmtime.component._types:RecordType.fields': '1dc510e611877e28',
    'py:wasmtime.component._types:ResultType._cases': 'd2943763fa76c1ee',
    'py:wasmtime.component._types:ResultType.convert_to_c': 'ab348c5ccf1b69e0',
    'py:wasmtime.component._types:ResultType.err': '65b6b33a319b0593',
    'py:wasmtime.component._types:ResultType.ok': '6aaaa00b1371b031',
    'py:wasmtime.component._types:String.convert_from_c': 'c0bdd40c69f3855b',
    'py:wasmtime.component._types:String.convert_to_c': 'c0984a7c8a5cd77d',
    'py:wasmtime.component._types:TupleType.convert_from_c': '87427b2b92bd5190',
    'py:wasmtime.component._types:TupleType.convert_to_c': '3466ea91d7081323',
    'py:wasmtime.component._types:TupleType.elements': '0cb747f2625936b0',
    'py:wasmtime.component._types:ValType.add_classes': 'b1de7b66717a98f2',
    'py:wasmtime.component._types:Variant': '932cc0fda9704fa5',
    'py:wasmtime.component._types:VariantLikeType._lower': '4091b068cb4c3bcc',
    'py:wasmtime.component._types:VariantLikeType._tagged': '0f0034ada8d23c5e',
    'py:wasmtime.component._types:VariantLikeType.add_classes': '0a8f8a28a72a14e8',
    'py:wasmtime.component._types:VariantType._cases': 'bcbce9c44ed844f8',
    'py:wasmtime.component._types:VariantType.cases': 'b0d5aa868050b6f7',
    'py:wasmtime.component._types:VariantType.convert_to_c': 'e6517644f7813255',
    'quick:': '8deaad85824e4903',
    'c:wasmtime_store_epoch_deadline_callback': '0b55273ec0dd0866',
    'const:wasmtime_update_deadline_kind_t': 'f8e804cbf533954d',
    'py:wasmtime._managed:Managed.ptr': '0dd65b4b5462a0b6',
}


def installed_wasmtime() -> str:
    return importlib.metadata.version("wasmtime")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"no module {module}")
    with open(spec.origin, encoding="utf-8") as f:
        return ast.parse(f.read())


def _python(module: str, qualname: str) -> str:
    """The syntax tree of ``qualname`` in ``module``'s source (without its docstring)."""
    node: Any = _tree(module)
    for part in qualname.split("."):
        found = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            raise LookupError(f"{module} has no {qualname}")
        node = found[-1]  # a property's setter comes after its getter; the last definition wins
    return ast.dump(node, include_attributes=False)


def _type_name(t: Any) -> str:
    return "None" if t is None else getattr(t, "__name__", repr(t))


def _ctype(name: str) -> str:
    from wasmtime import _ffi

    t = getattr(_ffi, name)
    if isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union)):
        fields = [(f, _type_name(ft), getattr(t, f).offset) for f, ft, *_ in t._fields_]
        return repr((ctypes.sizeof(t), fields))
    if hasattr(t, "_argtypes_"):  # a CFUNCTYPE
        return repr(([_type_name(a) for a in t._argtypes_], _type_name(t._restype_)))
    raise LookupError(f"wasmtime._ffi.{name} is neither a struct nor a callback type")


def _cfunc(name: str) -> str:
    from wasmtime import _bindings

    fn = getattr(_bindings, "_" + name, None)
    if fn is None:
        raise LookupError(f"wasmtime._bindings does not declare {name}")
    return repr(([_type_name(a) for a in fn.argtypes or ()], _type_name(fn.restype)))


#: the class of every ctypes foreign function (private in ctypes; wasmtime_patches 6 rebinds these)
_C_FUNCTION: type = type(ctypes.CDLL(None).free).__mro__[1]


def _quick() -> str:
    from wasmtime import _bindings

    from .wasmtime_patches import QUICK

    names = sorted(n[1:] for n, fn in vars(_bindings).items()
                   if n.startswith("_") and isinstance(fn, _C_FUNCTION) and QUICK.match(n[1:]))
    return repr([(n, _cfunc(n)) for n in names])


def fingerprint(ref: str) -> str:
    """The digest of what ``ref`` names in the installed wasmtime; raises LookupError when it is gone."""
    kind, _, rest = ref.partition(":")
    if kind == "py":
        module, _, qualname = rest.partition(":")
        return _digest(_python(module, qualname))
    if kind == "c":
        return _digest(_cfunc(rest))
    if kind == "ctype":
        return _digest(_ctype(rest))
    if kind == "const":
        from wasmtime import _ffi

        value = getattr(_ffi, rest)
        return _digest(repr(getattr(value, "value", value)))
    if kind == "quick":
        return _digest(_quick())
    raise ValueError(f"unknown reference {ref!r}")


def _current(ref: str) -> str:
    try:
        return fingerprint(ref)
    except (LookupError, AttributeError) as e:
        return f"gone ({e})"


def changes() -> list[str]:
    """One line per patch whose ground differs from the tested wasmtime's, naming what moved."""
    out = []
    for patch, refs in RELIES_ON.items():
        moved = [ref for ref in refs if _current(ref) != FINGERPRINTS.get(ref)]
        if moved:
            out.append(f"{patch}: wasmtime {installed_wasmtime()} changed " + ", ".join(
                f"{ref} ({_current(ref) if _current(ref).startswith('gone') else 'changed'})" for ref in moved))
    return out


def _table() -> str:
    refs = sorted({ref for refs in RELIES_ON.values() for ref in refs})
    lines = [f"    {ref!r}: {fingerprint(ref)!r}," for ref in refs]
    return "FINGERPRINTS: dict[str, str] = {\n" + "\n".join(lines) + "\n}"


if __name__ == "__main__":
    print(f"# wasmtime {installed_wasmtime()}: set TESTED_WASMTIME and replace FINGERPRINTS with")
    print(_table())
