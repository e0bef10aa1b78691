"""Hypothesis strategies: WIT types (snapshot form) and plain values of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from hypothesis import strategies as st

from trellis.host.runtime.wit import (
    INT_RANGES,
    PRIMITIVES,
    EnumT,
    FlagsT,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)

# kebab-case names, including multi-word ones like WIT's `order-number`
_WORDS = ["a", "b", "order", "number", "line", "items", "x", "price", "id", "ok"]
names = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=2).map("-".join)


def _unique_names(min_size: int = 1, max_size: int = 4) -> st.SearchStrategy[list[str]]:
    return st.lists(names, min_size=min_size, max_size=max_size, unique=True)


prims: st.SearchStrategy[WitType] = st.sampled_from(PRIMITIVES).map(Prim)


def _compound(inner: st.SearchStrategy[WitType]) -> st.SearchStrategy[WitType]:
    maybe = st.none() | inner
    return st.one_of(
        inner.map(ListT),
        _unique_names().flatmap(
            lambda ns: st.tuples(*[inner for _ in ns]).map(lambda ts: RecordT(tuple(zip(ns, ts, strict=True))))
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: TupleT(tuple(ts))),
        _unique_names().flatmap(
            lambda ns: st.tuples(*[maybe for _ in ns]).map(lambda ts: VariantT(tuple(zip(ns, ts, strict=True))))
        ),
        _unique_names().map(lambda ns: EnumT(tuple(ns))),
        _unique_names().map(lambda ns: FlagsT(tuple(ns))),
        inner.map(OptionT),
        st.tuples(maybe, maybe).map(lambda p: ResultT(*p)),
    )


wit_types: st.SearchStrategy[WitType] = st.recursive(prims, _compound, max_leaves=6)

_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_text_chars = st.characters(exclude_categories=_SURROGATES)


def plain_values(ty: WitType) -> st.SearchStrategy[Any]:
    """Plain values of ``ty`` in the codec's canonical (output) form."""
    if isinstance(ty, Prim):
        n = ty.name
        if n in INT_RANGES:
            lo, hi = INT_RANGES[n]
            return st.integers(lo, hi)
        if n == "bool":
            return st.booleans()
        if n == "f32":
            return st.floats(width=32, allow_nan=False)
        if n == "f64":
            return st.floats(allow_nan=False)
        if n == "char":
            return _text_chars
        return st.text(_text_chars, max_size=8)
    if isinstance(ty, ListT):
        if ty.is_bytes:
            return st.binary(max_size=8)
        return st.lists(plain_values(ty.element), max_size=3)
    if isinstance(ty, RecordT):
        return st.fixed_dictionaries({n: plain_values(t) for n, t in ty.fields})
    if isinstance(ty, TupleT):
        return st.tuples(*[plain_values(t) for t in ty.elements]).map(list)
    if isinstance(ty, EnumT):
        return st.sampled_from(ty.names)
    if isinstance(ty, FlagsT):
        return st.sets(st.sampled_from(ty.names)).map(lambda s: [n for n in ty.names if n in s])
    if isinstance(ty, OptionT):
        inner = plain_values(ty.payload)
        if isinstance(ty.payload, OptionT):
            inner = inner.map(lambda v: {"some": v})
        return st.none() | inner
    cases = ty.case_types()  # variant, result
    return st.one_of(*[(st.none() if t is None else plain_values(t)).map(_tagged(n)) for n, t in cases])


def _tagged(case: str) -> Callable[[Any], dict[str, Any]]:
    return lambda v: {case: v}


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[WitType, Any]:
    ty = draw(wit_types)
    return ty, draw(plain_values(ty))
