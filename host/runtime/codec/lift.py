"""wasmtime-py Python value -> plain (:func:`to_plain`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wasmtime import component as wc

from ..wit import (
    INT_RANGES,
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
    mentions_resources,
    py_classes,
    render,
)
from .common import (
    CodecError,
    Plain,
    ResourceCodec,
    as_wit,
    cases_in_order,
    each_of,
    enum_converter,
    is_int,
    kept,
    list_of,
    nullable,
    run,
    step,
    strict_instance,
    type_name,
)


def to_plain(
    ty: WitType | wc.ValType,
    value: Any,
    *,
    resources: ResourceCodec | None = None,
    path: str = "value",
) -> Plain:
    """Convert a value lifted by wasmtime-py into its plain form."""
    return run(_lifter(as_wit(ty)), value, resources, path)


Lifter = Callable[[Any, "ResourceCodec | None"], Plain]


def _lifter(ty: WitType) -> Lifter:
    return kept(ty, "_lifter", _build_lifter)


def _build_lifter(ty: WitType) -> Lifter:
    if isinstance(ty, Prim):
        return _prim_lifter(ty.name)
    if isinstance(ty, ListT):
        if ty.is_bytes:
            def lift_bytes(value: Any, res: ResourceCodec | None) -> Plain:
                if value.__class__ is bytes:
                    return value
                if isinstance(value, (bytes, bytearray)):
                    return bytes(value)
                raise CodecError("", f"expected bytes, got {type_name(value)}")
            return lift_bytes
        return _list_lifter(ty)
    if isinstance(ty, RecordT):
        return _record_lifter(ty)
    if isinstance(ty, TupleT):
        return _tuple_lifter(ty)
    if isinstance(ty, EnumT):
        return enum_converter(ty)
    if isinstance(ty, FlagsT):
        def flags(value: Any, res: ResourceCodec | None) -> Plain:
            if not isinstance(value, (set, frozenset)):
                raise CodecError("", f"expected set of flags, got {type_name(value)}")
            unknown = set(value) - set(ty.names)
            if unknown:
                raise CodecError("", f"unknown flags {sorted(map(str, unknown))}")
            return [n for n in ty.names if n in value]
        return flags
    if isinstance(ty, (OwnT, BorrowT)):
        def resource(value: Any, res: ResourceCodec | None) -> Plain:
            if res is None:
                raise CodecError("", f"{render(ty)} has no plain form")
            return res.lift(ty, value, "")
        return resource
    assert isinstance(ty, (VariantT, OptionT, ResultT))
    return _variant_lifter(ty)


def _prim_lifter(name: str) -> Lifter:
    cls = {"bool": bool, "f32": float, "f64": float, "char": str, "string": str}.get(name, int)

    def prim(value: Any, res: ResourceCodec | None) -> Plain:
        if value.__class__ is cls:
            return value
        return _prim_to_plain(name, value, "")
    return prim


def _list_lifter(ty: ListT) -> Lifter:
    return list_of(_lifter(ty.element), mentions_resources(ty.element))


def _record_lifter(ty: RecordT) -> Lifter:
    fields = [(name, _lifter(fty)) for name, fty in ty.fields]

    def record(value: Any, res: ResourceCodec | None) -> Plain:
        out: dict[str, Plain] = {}
        for name, conv in fields:
            try:
                field = getattr(value, name)
            except AttributeError:
                raise CodecError("", f"record value lacks field {name!r}") from None
            try:
                out[name] = conv(field, res)
            except CodecError as e:
                raise step(f".{name}", e) from None
        return out
    return record


def _tuple_lifter(ty: TupleT) -> Lifter:
    convs = [_lifter(t) for t in ty.elements]
    n = len(convs)

    def tup(value: Any, res: ResourceCodec | None) -> Plain:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            raise CodecError("", f"expected {render(ty)}, got {type_name(value)}")
        return each_of(convs, value, res)
    return tup


def _variant_lifter(ty: VariantT | OptionT | ResultT) -> Lifter:
    """The case of an untagged value is the first, in :func:`untagged_order`, whose classes it
    has (a bool is not taken for an integer); a tagged one names its case."""
    cases, order = cases_in_order(ty)
    convs = [None if case is None else _lifter(case) for _, case in cases]
    by_tag = {name: i for i, (name, _) in enumerate(cases)}
    untagged = [(i, None if cases[i][1] is None else py_classes(cases[i][1])) for i in order]  # type: ignore[arg-type]  # not None: checked on the left
    option = isinstance(ty, OptionT)
    nested = option and nullable(ty.payload)  # type: ignore[union-attr]  # an OptionT when option is true
    tagged = ty.tagged

    def variant(value: Any, res: ResourceCodec | None) -> Plain:
        if tagged:
            if not isinstance(value, wc.Variant):
                raise CodecError("", f"expected Variant, got {type_name(value)}")
            index = by_tag.get(value.tag)
            if index is None:
                raise CodecError("", f"unknown case {value.tag!r}")
            payload = value.payload
        else:
            for index, names in untagged:  # noqa: B007 (index: the case found, after the loop)
                if value is None if names is None else strict_instance(value, names):
                    break
            else:
                raise CodecError("", f"value of type {type_name(value)} fits no case of {render(ty)}")
            payload = value
        name = cases[index][0]
        conv = convs[index]
        try:
            inner = None if conv is None else conv(payload, res)
        except CodecError as e:
            raise step(f".{name}", e) from None
        if option:
            if index == 0:
                return None
            return {"some": inner} if nested else inner
        return {name: inner}
    return variant


def _prim_to_plain(name: str, value: Any, path: str) -> Plain:
    if name in INT_RANGES:
        if is_int(value):
            return value
    elif name == "bool":
        if isinstance(value, bool):
            return value
    elif name in ("f32", "f64"):
        if isinstance(value, float):
            return value
    elif isinstance(value, str):  # char, string
        return value
    raise CodecError(path, f"expected {name}, got {type_name(value)}")
