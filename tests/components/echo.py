"""Generates "echo" components for arbitrary WIT types, as component WAT.

For each type ``T`` the component imports ``echo<i>: func(x: T) -> T`` from
the interface ``test:echo/host`` and exports a world-level ``echo<i>`` with
the same type. The export is a real canonical-ABI round trip: it is lifted
from a small core adapter that calls the *lowered* import, so a value sent
by the host is lowered into the component's linear memory, lifted again to
reach the import, and the import's answer is lowered into memory and lifted
back out. Compiles in milliseconds, so property tests can build one per
example.

Records, variants, enums and flags must be named in component types; they
are declared and exported from the imported instance type as ``t0``, ``t1``
and so on.
"""

from __future__ import annotations

import math

from trellis.host.runtime.wit import (
    BorrowT,
    EnumT,
    FlagsT,
    ListT,
    OptionT,
    OwnT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)

__all__ = ["ECHO_INTERFACE", "echo_component_wat", "flatten"]

ECHO_INTERFACE = "test:echo/host"
MAX_FLAT_PARAMS = 16
MAX_FLAT_RESULTS = 1
RETPTR = 8
HEAP_START = 16384

_PRIM_FLAT = {
    "bool": "i32", "s8": "i32", "u8": "i32", "s16": "i32", "u16": "i32",
    "s32": "i32", "u32": "i32", "char": "i32", "s64": "i64", "u64": "i64",
    "f32": "f32", "f64": "f64",
}  # fmt: skip


def flatten(ty: WitType) -> list[str]:
    """Core value types of ``ty`` in the canonical ABI's flat form."""
    if isinstance(ty, Prim):
        return ["i32", "i32"] if ty.name == "string" else [_PRIM_FLAT[ty.name]]
    if isinstance(ty, ListT):
        return ["i32", "i32"]
    if isinstance(ty, RecordT):
        return [f for _, t in ty.fields for f in flatten(t)]
    if isinstance(ty, TupleT):
        return [f for t in ty.elements for f in flatten(t)]
    if isinstance(ty, EnumT):
        return ["i32"]
    if isinstance(ty, FlagsT):
        return ["i32"] * math.ceil(len(ty.names) / 32)
    if isinstance(ty, (OwnT, BorrowT)):
        return ["i32"]
    joined: list[str] = []
    for _, case in ty.case_types():
        if case is None:
            continue
        for i, f in enumerate(flatten(case)):
            if i < len(joined):
                joined[i] = _join(joined[i], f)
            else:
                joined.append(f)
    return ["i32", *joined]


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


class _Namer:
    """Declares named types inside the imported instance type."""

    def __init__(self) -> None:
        self.decls: list[str] = []
        self.names: dict[WitType, str] = {}

    def ref(self, ty: WitType) -> str:
        if isinstance(ty, Prim):
            return ty.name
        if isinstance(ty, ListT):
            return f"(list {self.ref(ty.element)})"
        if isinstance(ty, TupleT):
            return f"(tuple {' '.join(self.ref(t) for t in ty.elements)})"
        if isinstance(ty, OptionT):
            return f"(option {self.ref(ty.payload)})"
        if isinstance(ty, ResultT):
            ok = "" if ty.ok is None else f" {self.ref(ty.ok)}"
            err = "" if ty.err is None else f" (error {self.ref(ty.err)})"
            return f"(result{ok}{err})"
        if isinstance(ty, (OwnT, BorrowT)):
            raise ValueError("echo components do not support resources")
        return self._named(ty)

    def _named(self, ty: WitType) -> str:
        if ty in self.names:
            return self.names[ty]
        if isinstance(ty, RecordT):
            body = " ".join(f'(field "{n}" {self.ref(t)})' for n, t in ty.fields)
            definition = f"(record {body})"
        elif isinstance(ty, VariantT):
            cases = " ".join(
                f'(case "{n}")' if t is None else f'(case "{n}" {self.ref(t)})' for n, t in ty.cases
            )
            definition = f"(variant {cases})"
        elif isinstance(ty, EnumT):
            definition = f"(enum {' '.join(f'{chr(34)}{n}{chr(34)}' for n in ty.names)})"
        elif isinstance(ty, FlagsT):
            definition = f"(flags {' '.join(f'{chr(34)}{n}{chr(34)}' for n in ty.names)})"
        else:  # pragma: no cover
            raise TypeError(ty)
        i = len(self.names)
        self.decls.append(f"(type $d{i} {definition})")
        self.decls.append(f'(export "t{i}" (type $t{i} (eq $d{i})))')
        self.names[ty] = f"$t{i}"
        return f"$t{i}"


_REALLOC = """
    (func (export "realloc")
      (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                               (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
      (global.set $heap (i32.add (local.get $ptr) (local.get $new_size)))
      (block $fits
        (loop $grow
          (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
          (br $grow)))
      (if (local.get $old) (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
      (local.get $ptr))
"""


def echo_component_wat(types: list[WitType]) -> str:
    """Component WAT exporting ``echo<i>: func(x: T_i) -> T_i`` per type."""
    namer = _Namer()
    refs = [namer.ref(t) for t in types]
    funcs = [f'(export "echo{i}" (func (param "x" {r}) (result {r})))' for i, r in enumerate(refs)]
    instance_type = "\n    ".join([*namer.decls, *funcs])

    lines = [
        "(component",
        f'  (import "{ECHO_INTERFACE}" (instance $host\n    {instance_type}))',
    ]
    for i in range(len(namer.names)):
        lines.append(f'  (alias export $host "t{i}" (type $t{i}))')
    lines += [
        "  (core module $Mem",
        '    (memory (export "memory") 1)',
        f"    (global $heap (mut i32) (i32.const {HEAP_START}))",
        _REALLOC,
        "  )",
        "  (core instance $mem (instantiate $Mem))",
        '  (alias core export $mem "memory" (core memory $memory))',
        '  (alias core export $mem "realloc" (core func $realloc))',
    ]
    adapter_imports: list[str] = []
    adapter_funcs: list[str] = []
    for i, ty in enumerate(types):
        lines.append(f'  (alias export $host "echo{i}" (func $imp{i}))')
        lines.append(f"  (core func $low{i} (canon lower (func $imp{i}) (memory $memory) (realloc $realloc)))")
        params = flatten(ty)
        if len(params) > MAX_FLAT_PARAMS:
            params = ["i32"]
        results = flatten(ty)
        via_retptr = len(results) > MAX_FLAT_RESULTS
        p = " ".join(params)
        param_decl = f"(param {p})" if params else ""
        gets = " ".join(f"(local.get {j})" for j in range(len(params)))
        if via_retptr:
            adapter_imports.append(f'    (import "host" "echo{i}" (func $f{i} {param_decl} (param i32)))')
            adapter_funcs.append(
                f'    (func (export "echo{i}") {param_decl} (result i32)\n'
                f"      (call $f{i} {gets} (i32.const {RETPTR}))\n"
                f"      (i32.const {RETPTR}))"
            )
        else:
            result_decl = f"(result {results[0]})" if results else ""
            adapter_imports.append(f'    (import "host" "echo{i}" (func $f{i} {param_decl} {result_decl}))')
            adapter_funcs.append(f'    (func (export "echo{i}") {param_decl} {result_decl}\n      (call $f{i} {gets}))')
    lines += ["  (core module $Adapter", *adapter_imports, *adapter_funcs, "  )"]
    exports = " ".join(f'(export "echo{i}" (func $low{i}))' for i in range(len(types)))
    lines.append(f'  (core instance $adapter (instantiate $Adapter (with "host" (instance {exports}))))')
    for i, ref in enumerate(refs):
        lines.append(f'  (type $ft{i} (func (param "x" {_outer(ref)}) (result {_outer(ref)})))')
        lines.append(
            f'  (func $echo{i} (type $ft{i}) (canon lift (core func $adapter "echo{i}") (memory $memory) (realloc '
            '$realloc)))'
        )
        lines.append(f'  (export "echo{i}" (func $echo{i}))')
    lines.append(")")
    return "\n".join(lines)


def _outer(ref: str) -> str:
    """Type references are spelled the same inside and outside the instance
    type because the aliases reuse the names ``$t<i>``."""
    return ref
