"""plain -> what wasmtime-py lowers (:func:`from_plain`), validated against the WIT type."""

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
    classes,
    each_of,
    enum_converter,
    is_int,
    kept,
    list_of,
    nullable,
    run,
    step,
    type_name,
    untagged_order,
)


def from_plain(
    ty: WitType | wc.ValType,
    plain: Plain,
    *,
    resources: ResourceCodec | None = None,
    path: str = "value",
) -> Any:
    """Validate a plain value and convert it to what wasmtime-py lowers."""
    return run(_lowerer(as_wit(ty)), plain, resources, path)


Lowerer = Callable[[Plain, "ResourceCodec | None"], Any]


def _lowerer(ty: WitType) -> Lowerer:
    return kept(ty, "_lowerer", _build_lowerer)


def _build_lowerer(ty: WitType) -> Lowerer:
    if isinstance(ty, Prim):
        return _prim_lowerer(ty.name)
    if isinstance(ty, ListT):
        return _bytes_lowerer if ty.is_bytes else _list_lowerer(ty)
    if isinstance(ty, RecordT):
        return _record_lowerer(ty)
    if isinstance(ty, TupleT):
        return _tuple_lowerer(ty)
    if isinstance(ty, EnumT):
        return enum_converter(ty)
    if isinstance(ty, FlagsT):
        return lambda plain, res: _flags_from_plain(ty, plain, "")
    if isinstance(ty, (OwnT, BorrowT)):
        def resource(plain: Plain, res: ResourceCodec | None) -> Any:
            if res is None:
                raise CodecError("", f"{render(ty)} cannot be given as a plain value")
            return res.lower(ty, plain, "")
        return resource
    assert isinstance(ty, (VariantT, OptionT, ResultT))
    return _variant_lowerer(ty)


def _prim_lowerer(name: str) -> Lowerer:
    """The common, valid value passes on a class check; anything else takes the full check."""
    bounds = INT_RANGES.get(name)
    if bounds is not None:
        lo, hi = bounds

        def integer(plain: Plain, res: ResourceCodec | None) -> Any:
            if plain.__class__ is int and lo <= plain <= hi:
                return plain
            return _prim_from_plain(name, plain, "")
        return integer
    if name == "string":
        def string(plain: Plain, res: ResourceCodec | None) -> Any:
            if plain.__class__ is str and plain.isascii():
                return plain
            return _prim_from_plain(name, plain, "")
        return string
    return lambda plain, res: _prim_from_plain(name, plain, "")


def _bytes_lowerer(plain: Plain, res: ResourceCodec | None) -> Any:
    return plain if plain.__class__ is bytes else _bytes_from_plain(plain, "")


def _list_lowerer(ty: ListT) -> Lowerer:
    return list_of(_lowerer(ty.element), mentions_resources(ty.element))


def _record_lowerer(ty: RecordT) -> Lowerer:
    fields = [(name, _lowerer(fty)) for name, fty in ty.fields]
    names = [n for n, _ in ty.fields]
    keys = frozenset(names)
    record_class = wc.Record

    def record(plain: Plain, res: ResourceCodec | None) -> Any:
        if not isinstance(plain, dict):
            raise CodecError("", f"expected record (a dict), got {type_name(plain)}")
        if plain.keys() != keys:
            unknown = [k for k in plain if k not in keys]
            if unknown:
                raise CodecError("", f"unknown field(s) {unknown}; fields are {names}")
            missing = next(n for n in names if n not in plain)
            raise CodecError("", f"missing field {missing!r}")
        out = record_class()
        for name, conv in fields:
            try:
                setattr(out, name, conv(plain[name], res))
            except CodecError as e:
                raise step(f".{name}", e) from None
        return out
    return record


def _tuple_lowerer(ty: TupleT) -> Lowerer:
    convs = [_lowerer(t) for t in ty.elements]
    n = len(convs)

    def tup(plain: Plain, res: ResourceCodec | None) -> Any:
        if not isinstance(plain, (list, tuple)) or len(plain) != n:
            raise CodecError("", f"expected a list of {n} values for {render(ty)}, got {_describe(plain)}")
        return tuple(each_of(convs, plain, res))
    return tup


def _variant_lowerer(ty: VariantT | OptionT | ResultT) -> Lowerer:
    """``_plain_case`` finds the case; an untagged value is refused when wasmtime-py would
    take it for another case (:func:`_wasmtime_case`, with the classes read once here)."""
    cases = ty.case_types()
    convs = [None if case is None else _lowerer(case) for _, case in cases]
    tagged = ty.tagged
    variant_class = wc.Variant
    order = [(i, None if cases[i][1] is None else classes(py_classes(cases[i][1])))  # type: ignore[arg-type]  # not None: checked on the left
             for i in untagged_order(cases)]

    def variant(plain: Plain, res: ResourceCodec | None) -> Any:
        index, payload = _plain_case(ty, plain, "")
        name = cases[index][0]
        conv = convs[index]
        if conv is None:
            if payload is not None:
                raise CodecError(f".{name}", f"case {name!r} has no payload, got {type_name(payload)}")
            value = None
        else:
            try:
                value = conv(payload, res)
            except CodecError as e:
                raise step(f".{name}", e) from None
        if tagged:
            return variant_class(name, value)
        for chosen, accepts in order:  # noqa: B007 (chosen: the case found, after the loop)
            if value is None if accepts is None else isinstance(value, accepts):
                break
        else:
            chosen = -1
        if chosen != index:
            other = cases[chosen][0] if chosen >= 0 else "no case"
            raise CodecError(
                "",
                f"wasmtime-py would lower this {name!r} payload as {other!r} "
                f"of {render(ty)}; the value cannot be passed faithfully",
            )
        return value
    return variant


def _describe(plain: Plain) -> str:
    if isinstance(plain, (list, tuple)):
        return f"{len(plain)} values"
    return type_name(plain)


def _prim_from_plain(name: str, plain: Plain, path: str) -> Any:
    bounds = INT_RANGES.get(name)
    if bounds is not None:
        if not is_int(plain):
            raise CodecError(path, f"expected {name}, got {type_name(plain)}")
        lo, hi = bounds
        if not lo <= plain <= hi:
            raise CodecError(path, f"{plain} out of range for {name} [{lo}, {hi}]")
        return plain
    if name == "bool":
        if isinstance(plain, bool):
            return plain
    elif name in ("f32", "f64"):
        if isinstance(plain, float):
            return plain
        if is_int(plain):
            try:
                return float(plain)
            except OverflowError:
                raise CodecError(path, f"{plain} out of range for {name}") from None
    elif name == "char":
        if isinstance(plain, str) and len(plain) == 1:
            if 0xD800 <= ord(plain) <= 0xDFFF:
                raise CodecError(path, "a surrogate code point is not a valid char")
            return plain
        if isinstance(plain, str):
            raise CodecError(path, f"expected a single character, got {len(plain)} characters")
    elif isinstance(plain, str):  # string
        if not plain.isascii():
            try:
                plain.encode("utf-8")
            except UnicodeEncodeError as e:
                raise CodecError(path, f"string is not valid Unicode: {e.reason}") from None
        return plain
    raise CodecError(path, f"expected {name}, got {type_name(plain)}")


def _bytes_from_plain(plain: Plain, path: str) -> bytes:
    if isinstance(plain, bytes):
        return plain
    if isinstance(plain, (bytearray, memoryview)):
        return bytes(plain)
    if isinstance(plain, (list, tuple)):
        for i, v in enumerate(plain):
            if not is_int(v) or not 0 <= v <= 255:
                raise CodecError(f"{path}[{i}]", f"expected u8, got {v!r}")
        return bytes(plain)
    raise CodecError(path, f"expected bytes, got {type_name(plain)}")


def _flags_from_plain(ty: FlagsT, plain: Plain, path: str) -> set[str]:
    if isinstance(plain, (str, bytes, dict)) or not hasattr(plain, "__iter__"):
        raise CodecError(path, f"expected a list of flag names, got {type_name(plain)}")
    out: set[str] = set()
    for v in plain:
        if not isinstance(v, str) or v not in ty.names:
            raise CodecError(path, f"unknown flag {v!r}; flags are {list(ty.names)}")
        out.add(v)
    return out


def _plain_case(ty: VariantT | OptionT | ResultT, plain: Plain, path: str) -> tuple[int, Plain]:
    cases = ty.case_types()
    if isinstance(ty, OptionT):
        if plain is None:
            return 0, None
        if nullable(ty.payload):
            if not (isinstance(plain, dict) and list(plain) == ["some"]):
                raise CodecError(path, 'expected None or {"some": value} for a nested option')
            return 1, plain["some"]
        return 1, plain
    names = [n for n, _ in cases]
    if isinstance(ty, VariantT) and isinstance(plain, str):
        if plain in names and cases[names.index(plain)][1] is None:
            return names.index(plain), None
        raise CodecError(path, f"expected a payload-less case of {names} or a dict, got {plain!r}")
    if not isinstance(plain, dict) or len(plain) != 1:
        want = '{"ok": v} or {"err": e}' if isinstance(ty, ResultT) else f'{{"<case>": payload}} with a case in {names}'
        raise CodecError(path, f"expected {want}, got {_describe_dict(plain)}")
    (key, payload), = plain.items()
    if key not in names:
        raise CodecError(path, f"unknown case {key!r}; cases are {names}")
    return names.index(key), payload


def _describe_dict(plain: Plain) -> str:
    if isinstance(plain, dict):
        return f"a dict with keys {list(plain)}"
    return type_name(plain)
