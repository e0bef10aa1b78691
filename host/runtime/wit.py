"""A pure, hashable snapshot of WIT value types.

wasmtime-py describes types with FFI-backed objects (``wasmtime.component``
``ValType`` subclasses): every ``.fields`` or ``.cases`` access crosses the
FFI and allocates new objects, and they cannot be hashed or built without a
component. The runtime converts them once, when a component is loaded, into
the frozen dataclasses below (:func:`from_valtype`) and from then on the
codec, introspection and import binding work on these.

The snapshot also records what wasmtime-py needs to know to lift and lower
values: whether a variant-like type (variant, option, result) is *tagged*
(passed as ``wasmtime.component.Variant``) or *untagged* (the bare payload).
:func:`py_classes` and :attr:`VariantLike.tagged` mirror wasmtime-py's
``add_classes``/``_tagged`` rules exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from wasmtime import component as wc

__all__ = [
    "Prim",
    "ListT",
    "RecordT",
    "TupleT",
    "VariantT",
    "EnumT",
    "OptionT",
    "ResultT",
    "FlagsT",
    "ResourceRef",
    "OwnT",
    "BorrowT",
    "WitType",
    "VariantLike",
    "PRIMITIVES",
    "INT_RANGES",
    "from_valtype",
    "render",
    "py_classes",
    "mentions_resources",
]

PRIMITIVES: tuple[str, ...] = (
    "bool", "s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64",
    "f32", "f64", "char", "string",
)  # fmt: skip

INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "s8": (-(2**7), 2**7 - 1),
    "s16": (-(2**15), 2**15 - 1),
    "s32": (-(2**31), 2**31 - 1),
    "s64": (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class Prim:
    """A primitive: one of :data:`PRIMITIVES`."""

    name: str


@dataclass(frozen=True)
class ListT:
    element: WitType

    @property
    def is_bytes(self) -> bool:
        return self.element == Prim("u8")


@dataclass(frozen=True)
class RecordT:
    fields: tuple[tuple[str, WitType], ...]


@dataclass(frozen=True)
class TupleT:
    elements: tuple[WitType, ...]


@dataclass(frozen=True)
class EnumT:
    names: tuple[str, ...]


@dataclass(frozen=True)
class FlagsT:
    names: tuple[str, ...]


@dataclass(frozen=True)
class ResourceRef:
    """Names a resource type: the interface (import/export name) declaring
    it, and its WIT name. ``interface`` is ``""`` for world-level resources
    and ``"?"`` when the runtime could not attribute it."""

    interface: str
    name: str


@dataclass(frozen=True)
class OwnT:
    resource: ResourceRef


@dataclass(frozen=True)
class BorrowT:
    resource: ResourceRef


class VariantLike:
    """Shared behaviour of variant, option and result types."""

    def case_types(self) -> tuple[tuple[str, WitType | None], ...]:
        raise NotImplementedError

    @cached_property
    def tagged(self) -> bool:
        """True when wasmtime-py represents values as ``Variant(tag, payload)``.

        That happens exactly when two cases' Python classes overlap, a case
        without payload counting as ``object``. Otherwise the value is the
        bare payload (``None`` for a payload-less case).
        """
        seen: set[str] = set()
        for _, ty in self.case_types():
            classes = {"object"} if ty is None else py_classes(ty)
            if classes & seen:
                return True
            seen |= classes
        return False


@dataclass(frozen=True)
class VariantT(VariantLike):
    cases: tuple[tuple[str, WitType | None], ...]

    def case_types(self) -> tuple[tuple[str, WitType | None], ...]:
        return self.cases


@dataclass(frozen=True)
class OptionT(VariantLike):
    payload: WitType

    def case_types(self) -> tuple[tuple[str, WitType | None], ...]:
        return (("none", None), ("some", self.payload))


@dataclass(frozen=True)
class ResultT(VariantLike):
    ok: WitType | None
    err: WitType | None

    def case_types(self) -> tuple[tuple[str, WitType | None], ...]:
        return (("ok", self.ok), ("err", self.err))


WitType = Prim | ListT | RecordT | TupleT | VariantT | EnumT | OptionT | ResultT | FlagsT | OwnT | BorrowT

# Python classes wasmtime-py uses for each kind, by name (see add_classes).
_PRIM_CLASSES: dict[str, str] = {
    "bool": "bool",
    "f32": "float",
    "f64": "float",
    "char": "str",
    "string": "str",
    **{name: "int" for name in INT_RANGES},
}


def py_classes(ty: WitType) -> frozenset[str]:
    """Names of the Python classes wasmtime-py lifts ``ty`` to (kept on the type: asked per value)."""
    try:
        return ty.__dict__["_py_classes"]
    except KeyError:
        found = ty.__dict__["_py_classes"] = _py_classes(ty)  # frozen, but a cache is no field
        return found


def _py_classes(ty: WitType) -> frozenset[str]:
    if isinstance(ty, Prim):
        return frozenset({_PRIM_CLASSES[ty.name]})
    if isinstance(ty, ListT):
        return frozenset({"bytes" if ty.is_bytes else "list"})
    if isinstance(ty, RecordT):
        return frozenset({"Record"})
    if isinstance(ty, TupleT):
        return frozenset({"tuple"})
    if isinstance(ty, EnumT):
        return frozenset({"str"})
    if isinstance(ty, FlagsT):
        return frozenset({"set"})
    if isinstance(ty, (OwnT, BorrowT)):
        return frozenset({"ResourceAny", "ResourceHost"})
    if ty.tagged:
        return frozenset({"Variant"})
    out: set[str] = set()
    for _, case in ty.case_types():
        out |= {"object"} if case is None else py_classes(case)
    return frozenset(out)


_PRIM_BY_CLASS: dict[type, str] = {
    wc.Bool: "bool",
    wc.S8: "s8",
    wc.S16: "s16",
    wc.S32: "s32",
    wc.S64: "s64",
    wc.U8: "u8",
    wc.U16: "u16",
    wc.U32: "u32",
    wc.U64: "u64",
    wc.F32: "f32",
    wc.F64: "f64",
    wc.Char: "char",
    wc.String: "string",
}


ResourceNamer = Callable[[wc.ResourceType], ResourceRef]


def _unknown_resource(_: wc.ResourceType) -> ResourceRef:
    return ResourceRef("?", "resource")


def from_valtype(vt: wc.ValType, resources: ResourceNamer = _unknown_resource) -> WitType:
    """Snapshot a wasmtime-py value type. ``resources`` names resource types."""
    prim = _PRIM_BY_CLASS.get(type(vt))
    if prim is not None:
        return Prim(prim)
    if isinstance(vt, wc.ListType):
        return ListT(from_valtype(vt.element, resources))
    if isinstance(vt, wc.RecordType):
        return RecordT(tuple((n, from_valtype(t, resources)) for n, t in vt.fields))
    if isinstance(vt, wc.TupleType):
        return TupleT(tuple(from_valtype(t, resources) for t in vt.elements))
    if isinstance(vt, wc.VariantType):
        return VariantT(
            tuple(
                (n, None if t is None else from_valtype(t, resources))
                for n, t in vt.cases
            )
        )
    if isinstance(vt, wc.EnumType):
        return EnumT(tuple(vt.names))
    if isinstance(vt, wc.OptionType):
        return OptionT(from_valtype(vt.payload, resources))
    if isinstance(vt, wc.ResultType):
        ok, err = vt.ok, vt.err
        return ResultT(
            None if ok is None else from_valtype(ok, resources),
            None if err is None else from_valtype(err, resources),
        )
    if isinstance(vt, wc.FlagsType):
        return FlagsT(tuple(vt.names))
    if isinstance(vt, wc.OwnType):
        return OwnT(resources(vt.ty))
    if isinstance(vt, wc.BorrowType):
        return BorrowT(resources(vt.ty))
    raise TypeError(f"unsupported WIT type: {type(vt).__name__}")


def render(ty: WitType | None) -> str:
    """A WIT-like spelling of a type, for ``describe()`` and error messages.

    Records, variants, enums and flags are anonymous here (wasmtime does not
    expose type names), so they are spelled structurally.
    """
    if ty is None:
        return "_"
    if isinstance(ty, Prim):
        return ty.name
    if isinstance(ty, ListT):
        return f"list<{render(ty.element)}>"
    if isinstance(ty, RecordT):
        inner = ", ".join(f"{n}: {render(t)}" for n, t in ty.fields)
        return f"record {{ {inner} }}"
    if isinstance(ty, TupleT):
        return f"tuple<{', '.join(render(t) for t in ty.elements)}>"
    if isinstance(ty, VariantT):
        inner = ", ".join(n if t is None else f"{n}({render(t)})" for n, t in ty.cases)
        return f"variant {{ {inner} }}"
    if isinstance(ty, EnumT):
        return f"enum {{ {', '.join(ty.names)} }}"
    if isinstance(ty, FlagsT):
        return f"flags {{ {', '.join(ty.names)} }}"
    if isinstance(ty, OptionT):
        return f"option<{render(ty.payload)}>"
    if isinstance(ty, ResultT):
        if ty.ok is None and ty.err is None:
            return "result"
        if ty.err is None:
            return f"result<{render(ty.ok)}>"
        return f"result<{render(ty.ok)}, {render(ty.err)}>"
    if isinstance(ty, OwnT):
        return _resource_name(ty.resource)
    return f"borrow<{_resource_name(ty.resource)}>"


def _resource_name(ref: ResourceRef) -> str:
    return f"{ref.interface}.{ref.name}" if ref.interface else ref.name


def mentions_resources(ty: WitType | None) -> bool:
    """Whether a value of ``ty`` may hold a resource handle."""
    if ty is None:
        return False
    if isinstance(ty, (OwnT, BorrowT)):
        return True
    if isinstance(ty, ListT):
        return mentions_resources(ty.element)
    if isinstance(ty, RecordT):
        return any(mentions_resources(t) for _, t in ty.fields)
    if isinstance(ty, TupleT):
        return any(mentions_resources(t) for t in ty.elements)
    if isinstance(ty, VariantLike):
        return any(mentions_resources(t) for _, t in ty.case_types())
    return False
