"""What both directions of the codec share: the error, the resource hook, the kept converters
and the helpers they are built from (the contract itself: :mod:`trellis.host.runtime.codec`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

from wasmtime import component as wc

from ..wit import (
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
    VariantLike,
    VariantT,
    WitType,
    from_valtype,
    py_classes,
)

Plain = Any
"""A plain value (see the module docstring). ``Any`` because the shape is
recursive and checked at run time by the codec."""


class CodecError(ValueError):
    """A value does not fit its WIT type. ``path`` locates it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class ResourceCodec(Protocol):
    """Converts resource handles, which have no plain form of their own."""

    def lift(self, ty: OwnT | BorrowT, value: Any, path: str) -> Any:
        """wasmtime ``ResourceAny`` -> the value handed to Python code."""
        ...

    def lower(self, ty: OwnT | BorrowT, value: Any, path: str) -> Any:
        """Python value -> something wasmtime-py lowers (``ResourceHost``)."""
        ...


WIT_CLASSES = (Prim, ListT, RecordT, TupleT, VariantT, EnumT, OptionT, ResultT, FlagsT, OwnT, BorrowT)


def as_wit(ty: WitType | wc.ValType) -> WitType:
    """Accept either a snapshot type or a wasmtime-py ``ValType``."""
    if isinstance(ty, WIT_CLASSES):
        return ty
    return from_valtype(ty)


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Both directions run a converter built once per type and kept on it (a query result
# is a list of rows of cells; the checks are decided by the type, not asked again per
# value). A converter raises CodecError with the path *below* the value it was given;
# each container adds its own step as the error passes, so paths are built only for
# a value that fails.

def run(conv: Callable[[Any, Any], Any], value: Any, res: ResourceCodec | None, path: str) -> Any:
    try:
        return conv(value, res)
    except CodecError as e:  # raised with the path below this value; name it from the top
        raise CodecError(path + e.path, e.message) from None


def kept(ty: WitType | VariantLike, key: str, build: Callable[[Any], Any]) -> Any:
    try:
        return ty.__dict__[key]
    except KeyError:
        conv = ty.__dict__[key] = build(ty)  # frozen, but a cache is no field
        return conv


def step(where: str, e: CodecError) -> CodecError:
    """``e`` raised one step further up: ``where`` (``[i]``, ``.name``) goes before its path."""
    return CodecError(where + e.path, e.message)


def enum_converter(ty: EnumT) -> Callable[[Any, Any], Any]:
    """An enum's case name, the same in both directions."""
    names = frozenset(ty.names)

    def enum(value: Any, res: ResourceCodec | None) -> Any:
        if isinstance(value, str) and value in names:
            return value
        raise CodecError("", f"expected one of {list(ty.names)}, got {value!r}")
    return enum


def list_of(el: Callable[[Any, Any], Any], effects: bool) -> Callable[[Any, Any], list[Any]]:
    """A list (or tuple) converted element by element with ``el``; a failing element is named
    by its index. Converting a resource has effects (a handle taken from a table, a borrow
    ended), so with ``effects`` no element is converted twice."""
    def lst(value: Any, res: ResourceCodec | None) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise CodecError("", f"expected list, got {type_name(value)}")
        if effects:
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(el(v, res))
                except CodecError as e:
                    raise step(f"[{i}]", e) from None
            return out
        try:
            return [el(v, res) for v in value]
        except CodecError:  # pure: find the element that fails, to name it
            for i, v in enumerate(value):
                try:
                    el(v, res)
                except CodecError as e:
                    raise step(f"[{i}]", e) from None
            raise
    return lst


def each_of(convs: list[Callable[[Any, Any], Any]], values: Any, res: ResourceCodec | None) -> list[Any]:
    """A tuple's elements, each converted by its own converter (a failing one named by index)."""
    out = []
    for i, conv in enumerate(convs):
        try:
            out.append(conv(values[i], res))
        except CodecError as e:
            raise step(f"[{i}]", e) from None
    return out


def untagged_order(cases: tuple[tuple[str, WitType | None], ...]) -> list[int]:
    """Case indices in the order an untagged value is matched: cases that could match any
    value (their classes include ``object``) last, as the patched wasmtime-py lowers them
    (see :mod:`trellis.host.runtime.wasmtime_patches`)."""
    def matches_anything(ty: WitType | None) -> bool:
        return ty is not None and "object" in py_classes(ty)

    return sorted(range(len(cases)), key=lambda i: matches_anything(cases[i][1]))


def cases_in_order(ty: VariantLike) -> tuple[tuple[tuple[str, WitType | None], ...], list[int]]:
    """``ty``'s cases and their untagged_order, kept on the type (asked per value)."""
    return kept(ty, "_cases_in_order", lambda t: (t.case_types(), untagged_order(t.case_types())))


CLASS_BY_NAME: dict[str, type] = {
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "bytes": bytes,
    "list": list,
    "tuple": tuple,
    "set": set,
    "Record": wc.Record,
    "Variant": wc.Variant,
    "ResourceAny": wc.ResourceAny,
    "ResourceHost": wc.ResourceHost,
    "object": object,
}


@cache
def classes(names: frozenset[str]) -> tuple[type, ...]:
    return tuple(CLASS_BY_NAME[n] for n in names)


def strict_instance(value: Any, names: frozenset[str]) -> bool:
    """isinstance, except that a bool is not an int."""
    if isinstance(value, bool) and "bool" not in names and "object" not in names:
        return False
    return isinstance(value, classes(names))


def nullable(ty: WitType) -> bool:
    """Whether ``None`` is a plain value of ``ty``."""
    return isinstance(ty, OptionT)
