"""Plain values: the contract for component values on the wire and in JSON.

A *plain* value is built only from ``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, ``list`` and ``dict`` with ``str`` keys, so it encodes
directly to msgpack (and to JSON, apart from ``bytes``). Conversion is
driven by the WIT type, never guessed from the Python value.

Conventions (also the CLI's JSON form):

=====================  ======================================================
WIT                    plain
=====================  ======================================================
bool                   ``bool``
s8..s64, u8..u64       ``int`` (range-checked when lowering)
f32, f64               ``float`` (an ``int`` is accepted when lowering)
char                   1-character ``str`` (no surrogates)
string                 ``str``
list<u8>               ``bytes`` (a list of ints 0..255 is accepted)
list<T>                ``list``
record                 ``dict`` keyed by the WIT field names exactly as
                       written in WIT (kebab-case: ``"order-number"``); all
                       fields required, unknown keys rejected
tuple<...>             ``list`` (a ``tuple`` is accepted)
enum                   case name ``str``
flags                  ``list`` of the set flag names, in declaration order
                       (any iterable of names is accepted)
option<T>              ``None`` or the plain payload; when ``T`` is itself
                       an option (so ``None`` would be ambiguous), ``some(x)``
                       is ``{"some": x}``
result<T, E>           ``{"ok": v}`` or ``{"err": e}``; the payload is
                       ``None`` for a case without a type
variant                ``{"<case-name>": payload}``, payload ``None`` for a
                       case without a type; when lowering, a bare
                       ``"<case-name>"`` string is accepted for such cases
own<R>, borrow<R>      only through a :class:`ResourceCodec` (host resources
                       in import calls); otherwise a :class:`CodecError`
=====================  ======================================================

wasmtime-py's side of the conversion: it lifts a variant, option or result
*untagged* (the bare payload) when the Python classes of its cases do not
overlap, and as ``Variant(tag, payload)`` only when they do (see
:attr:`host.runtime.wit.VariantLike.tagged`). :func:`to_plain` therefore
decides the case of an untagged value by checking it against each case type
(``bool`` is not taken for an integer), and :func:`from_plain` produces
exactly the Python shape wasmtime-py lowers, refusing the rare values that
wasmtime-py would lower as the wrong case (``variant { a(u32), b(bool) }``
with ``b(true)``: ``True`` is an ``int`` to it).

Both functions are pure; errors are :class:`CodecError` naming the path of
the offending value, e.g. ``args[0].line-items[2].price: expected u32, got
str``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Protocol

from wasmtime import component as wc

from .wit import (
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
    VariantLike,
    VariantT,
    WitType,
    from_valtype,
    mentions_resources,
    py_classes,
    render,
)

__all__ = ["Plain", "CodecError", "ResourceCodec", "to_plain", "from_plain", "as_wit"]

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


_WIT_CLASSES = (Prim, ListT, RecordT, TupleT, VariantT, EnumT, OptionT, ResultT, FlagsT, OwnT, BorrowT)


def as_wit(ty: WitType | wc.ValType) -> WitType:
    """Accept either a snapshot type or a wasmtime-py ``ValType``."""
    if isinstance(ty, _WIT_CLASSES):
        return ty
    return from_valtype(ty)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------
# wasmtime-py Python value -> plain


def to_plain(
    ty: WitType | wc.ValType,
    value: Any,
    *,
    resources: ResourceCodec | None = None,
    path: str = "value",
) -> Plain:
    """Convert a value lifted by wasmtime-py into its plain form."""
    return _run(_lifter(as_wit(ty)), value, resources, path)


# Both directions run a converter built once per type and kept on it (a query result
# is a list of rows of cells; the checks are decided by the type, not asked again per
# value). A converter raises CodecError with the path *below* the value it was given;
# each container adds its own step as the error passes, so paths are built only for
# a value that fails.

Lifter = Callable[[Any, "ResourceCodec | None"], Plain]
Lowerer = Callable[[Plain, "ResourceCodec | None"], Any]


def _run(conv: Callable[[Any, Any], Any], value: Any, res: ResourceCodec | None, path: str) -> Any:
    try:
        return conv(value, res)
    except CodecError as e:  # raised with the path below this value; name it from the top
        raise CodecError(path + e.path, e.message) from None


def _kept(ty: WitType, key: str, build: Callable[[Any], Any]) -> Any:
    try:
        return ty.__dict__[key]
    except KeyError:
        conv = ty.__dict__[key] = build(ty)  # frozen, but a cache is no field
        return conv


def _lifter(ty: WitType) -> Lifter:
    return _kept(ty, "_lifter", _build_lifter)  # type: ignore[no-any-return]


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
                raise CodecError("", f"expected bytes, got {_type_name(value)}")
            return lift_bytes
        return _list_lifter(ty)
    if isinstance(ty, RecordT):
        return _record_lifter(ty)
    if isinstance(ty, TupleT):
        return _tuple_lifter(ty)
    if isinstance(ty, EnumT):
        return _enum_converter(ty)
    if isinstance(ty, FlagsT):
        def flags(value: Any, res: ResourceCodec | None) -> Plain:
            if not isinstance(value, (set, frozenset)):
                raise CodecError("", f"expected set of flags, got {_type_name(value)}")
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


def _enum_converter(ty: EnumT) -> Callable[[Any, Any], Any]:
    """An enum's case name, the same in both directions."""
    names = frozenset(ty.names)

    def enum(value: Any, res: ResourceCodec | None) -> Any:
        if isinstance(value, str) and value in names:
            return value
        raise CodecError("", f"expected one of {list(ty.names)}, got {value!r}")
    return enum


def _prim_lifter(name: str) -> Lifter:
    cls = {"bool": bool, "f32": float, "f64": float, "char": str, "string": str}.get(name, int)

    def prim(value: Any, res: ResourceCodec | None) -> Plain:
        if value.__class__ is cls:
            return value
        return _prim_to_plain(name, value, "")
    return prim


def _list_lifter(ty: ListT) -> Lifter:
    return _list_of(_lifter(ty.element), mentions_resources(ty.element))


def _list_of(el: Callable[[Any, Any], Any], effects: bool) -> Callable[[Any, Any], list[Any]]:
    """A list (or tuple) converted element by element with ``el``; a failing element is named
    by its index. Converting a resource has effects (a handle taken from a table, a borrow
    ended), so with ``effects`` no element is converted twice."""
    def lst(value: Any, res: ResourceCodec | None) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise CodecError("", f"expected list, got {_type_name(value)}")
        if effects:
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(el(v, res))
                except CodecError as e:
                    raise _step(f"[{i}]", e) from None
            return out
        try:
            return [el(v, res) for v in value]
        except CodecError:  # pure: find the element that fails, to name it
            for i, v in enumerate(value):
                try:
                    el(v, res)
                except CodecError as e:
                    raise _step(f"[{i}]", e) from None
            raise
    return lst


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
                raise _step(f".{name}", e) from None
        return out
    return record


def _tuple_lifter(ty: TupleT) -> Lifter:
    convs = [_lifter(t) for t in ty.elements]
    n = len(convs)

    def tup(value: Any, res: ResourceCodec | None) -> Plain:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            raise CodecError("", f"expected {render(ty)}, got {_type_name(value)}")
        return _each_of(convs, value, res)
    return tup


def _each_of(convs: list[Callable[[Any, Any], Any]], values: Any, res: ResourceCodec | None) -> list[Any]:
    """A tuple's elements, each converted by its own converter (a failing one named by index)."""
    out = []
    for i, conv in enumerate(convs):
        try:
            out.append(conv(values[i], res))
        except CodecError as e:
            raise _step(f"[{i}]", e) from None
    return out


def _variant_lifter(ty: VariantT | OptionT | ResultT) -> Lifter:
    """The case of an untagged value is the first, in :func:`untagged_order`, whose classes it
    has (a bool is not taken for an integer); a tagged one names its case."""
    cases, order = _cases_in_order(ty)
    convs = [None if case is None else _lifter(case) for _, case in cases]
    by_tag = {name: i for i, (name, _) in enumerate(cases)}
    untagged = [(i, None if cases[i][1] is None else py_classes(cases[i][1])) for i in order]  # type: ignore[arg-type]
    option = isinstance(ty, OptionT)
    nested = option and _nullable(ty.payload)  # type: ignore[union-attr]
    tagged = ty.tagged

    def variant(value: Any, res: ResourceCodec | None) -> Plain:
        if tagged:
            if not isinstance(value, wc.Variant):
                raise CodecError("", f"expected Variant, got {_type_name(value)}")
            index = by_tag.get(value.tag)
            if index is None:
                raise CodecError("", f"unknown case {value.tag!r}")
            payload = value.payload
        else:
            for index, names in untagged:
                if value is None if names is None else _strict_instance(value, names):
                    break
            else:
                raise CodecError("", f"value of type {_type_name(value)} fits no case of {render(ty)}")
            payload = value
        name = cases[index][0]
        conv = convs[index]
        try:
            inner = None if conv is None else conv(payload, res)
        except CodecError as e:
            raise _step(f".{name}", e) from None
        if option:
            if index == 0:
                return None
            return {"some": inner} if nested else inner
        return {name: inner}
    return variant


def _prim_to_plain(name: str, value: Any, path: str) -> Plain:
    if name in INT_RANGES:
        if _is_int(value):
            return value
    elif name == "bool":
        if isinstance(value, bool):
            return value
    elif name in ("f32", "f64"):
        if isinstance(value, float):
            return value
    elif isinstance(value, str):  # char, string
        return value
    raise CodecError(path, f"expected {name}, got {_type_name(value)}")


def untagged_order(cases: tuple[tuple[str, WitType | None], ...]) -> list[int]:
    """Case indices in the order an untagged value is matched: cases that could match any
    value (their classes include ``object``) last, as the patched wasmtime-py lowers them
    (see :mod:`host.runtime.wasmtime_patches`)."""
    return sorted(range(len(cases)), key=lambda i: cases[i][1] is not None and "object" in py_classes(cases[i][1]))


def _cases_in_order(ty: VariantLike) -> tuple[tuple[tuple[str, WitType | None], ...], list[int]]:
    """``ty``'s cases and their untagged_order, kept on the type (asked per value)."""
    try:
        return ty.__dict__["_cases_in_order"]  # type: ignore[no-any-return]
    except KeyError:
        cases = ty.case_types()
        found = ty.__dict__["_cases_in_order"] = (cases, untagged_order(cases))
        return found


_CLASS_BY_NAME: dict[str, type] = {
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


@lru_cache(maxsize=None)
def _classes(names: frozenset[str]) -> tuple[type, ...]:
    return tuple(_CLASS_BY_NAME[n] for n in names)


def _strict_instance(value: Any, names: frozenset[str]) -> bool:
    """isinstance, except that a bool is not an int."""
    if isinstance(value, bool) and "bool" not in names and "object" not in names:
        return False
    return isinstance(value, _classes(names))


def _nullable(ty: WitType) -> bool:
    """Whether ``None`` is a plain value of ``ty``."""
    return isinstance(ty, OptionT)


# --------------------------------------------------------------------------
# plain -> wasmtime-py Python value


def from_plain(
    ty: WitType | wc.ValType,
    plain: Plain,
    *,
    resources: ResourceCodec | None = None,
    path: str = "value",
) -> Any:
    """Validate a plain value and convert it to what wasmtime-py lowers."""
    return _run(_lowerer(as_wit(ty)), plain, resources, path)


def _lowerer(ty: WitType) -> Lowerer:
    return _kept(ty, "_lowerer", _build_lowerer)  # type: ignore[no-any-return]


def _step(step: str, e: CodecError) -> CodecError:
    return CodecError(step + e.path, e.message)


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
        return _enum_converter(ty)
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
    return _list_of(_lowerer(ty.element), mentions_resources(ty.element))


def _record_lowerer(ty: RecordT) -> Lowerer:
    fields = [(name, _lowerer(fty)) for name, fty in ty.fields]
    names = [n for n, _ in ty.fields]
    keys = frozenset(names)
    record_class = wc.Record

    def record(plain: Plain, res: ResourceCodec | None) -> Any:
        if not isinstance(plain, dict):
            raise CodecError("", f"expected record (a dict), got {_type_name(plain)}")
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
                raise _step(f".{name}", e) from None
        return out
    return record


def _tuple_lowerer(ty: TupleT) -> Lowerer:
    convs = [_lowerer(t) for t in ty.elements]
    n = len(convs)

    def tup(plain: Plain, res: ResourceCodec | None) -> Any:
        if not isinstance(plain, (list, tuple)) or len(plain) != n:
            raise CodecError("", f"expected a list of {n} values for {render(ty)}, got {_describe(plain)}")
        return tuple(_each_of(convs, plain, res))
    return tup


def _variant_lowerer(ty: VariantT | OptionT | ResultT) -> Lowerer:
    """``_plain_case`` finds the case; an untagged value is refused when wasmtime-py would
    take it for another case (:func:`_wasmtime_case`, with the classes read once here)."""
    cases = ty.case_types()
    convs = [None if case is None else _lowerer(case) for _, case in cases]
    tagged = ty.tagged
    variant_class = wc.Variant
    order = [(i, None if cases[i][1] is None else _classes(py_classes(cases[i][1])))  # type: ignore[arg-type]
             for i in untagged_order(cases)]

    def variant(plain: Plain, res: ResourceCodec | None) -> Any:
        index, payload = _plain_case(ty, plain, "")
        name = cases[index][0]
        conv = convs[index]
        if conv is None:
            if payload is not None:
                raise CodecError(f".{name}", f"case {name!r} has no payload, got {_type_name(payload)}")
            value = None
        else:
            try:
                value = conv(payload, res)
            except CodecError as e:
                raise _step(f".{name}", e) from None
        if tagged:
            return variant_class(name, value)
        for chosen, classes in order:
            if value is None if classes is None else isinstance(value, classes):
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
    return _type_name(plain)


def _prim_from_plain(name: str, plain: Plain, path: str) -> Any:
    bounds = INT_RANGES.get(name)
    if bounds is not None:
        if not _is_int(plain):
            raise CodecError(path, f"expected {name}, got {_type_name(plain)}")
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
        if _is_int(plain):
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
    raise CodecError(path, f"expected {name}, got {_type_name(plain)}")


def _bytes_from_plain(plain: Plain, path: str) -> bytes:
    if isinstance(plain, bytes):
        return plain
    if isinstance(plain, (bytearray, memoryview)):
        return bytes(plain)
    if isinstance(plain, (list, tuple)):
        for i, v in enumerate(plain):
            if not _is_int(v) or not 0 <= v <= 255:
                raise CodecError(f"{path}[{i}]", f"expected u8, got {v!r}")
        return bytes(plain)
    raise CodecError(path, f"expected bytes, got {_type_name(plain)}")


def _flags_from_plain(ty: FlagsT, plain: Plain, path: str) -> set[str]:
    if isinstance(plain, (str, bytes, dict)) or not hasattr(plain, "__iter__"):
        raise CodecError(path, f"expected a list of flag names, got {_type_name(plain)}")
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
        if _nullable(ty.payload):
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
    return _type_name(plain)
