"""Results read straight to their plain form (trellis.host.runtime.lift_in_place) are what
wasmtime-py's conversion and the codec make together, for every type a reader is built for."""

from __future__ import annotations

import ctypes
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasmtime import _ffi as ffi

from tests.components.echo import echo_component_wat
from trellis.host.runtime import (
    CodecError,
    Invoker,
    RuntimeEngine,
    from_plain,
    lift_in_place,
    load_component,
    lower_in_place,
    to_plain,
    wasmtime_patches,
)
from trellis.host.runtime.wit import EnumT, FlagsT, ListT, OptionT, Prim, RecordT, ResultT, TupleT, VariantT

from .strategies import plain_values, wit_types
from .test_lower_in_place import _valtypes

ROW = RecordT((("name", Prim("string")), ("tags", ListT(TupleT((Prim("string"), ListT(Prim("u8")))))),
               ("n", Prim("u16")), ("x", Prim("f32")), ("c", Prim("char")), ("ok", Prim("bool")),
               ("rows", ListT(ListT(Prim("s64"))))))


def _lowered(vt: Any, store: Any, value: Any) -> Any:
    raw = ffi.wasmtime_component_val_t()
    vt.convert_to_c(store, value, ctypes.pointer(raw))
    return raw


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_the_plain_values_of_wasmtime_py_and_the_codec(engine: RuntimeEngine, data: st.DataObject) -> None:
    assert wasmtime_patches.apply() and lift_in_place.active()
    types = [ROW, *data.draw(st.lists(wit_types, min_size=1, max_size=3))]
    vts, store = _valtypes(engine, types)
    for ty, vt in zip(types, vts, strict=True):
        try:
            value = from_plain(ty, data.draw(plain_values(ty)))
        except CodecError:
            continue  # the documented wasmtime-py gap (a value it cannot pass faithfully)
        read = lift_in_place.reader(vt)
        if read is None:  # variants, options, ...: the two-step path stays
            continue
        ours = lift_in_place.lift_root(read, _lowered(vt, store, value))  # frees it
        theirs = to_plain(ty, vt.convert_from_c(_lowered(vt, store, value)))
        assert _same(ours, theirs), (ty, ours, theirs)


def test_readers_are_built_for_every_type_without_flags_or_resources(engine: RuntimeEngine) -> None:
    vts, _ = _valtypes(engine, [ROW, ListT(VariantT((("a", None), ("b", Prim("u8"))))), Prim("u64"),
                                FlagsT(("x", "y"))])
    assert [lift_in_place.reader(vt) is not None for vt in vts] == [True, True, True, False]


def _echo(interface: str, function: str, args: list[Any]) -> Any:
    return args[0]


def test_a_call_returns_the_same_result_either_way(engine: RuntimeEngine) -> None:
    loaded = load_component(engine, echo_component_wat([ROW]).encode())
    invoker = Invoker(loaded)
    value = {"name": "é✓", "tags": [["k", b"\x00v"], ["", b""]], "n": 65535, "x": 0.5, "c": "✓", "ok": True,
             "rows": [[1, -2**63], []]}
    lower_in_place.enabled = False  # the switch turns both corrections off
    try:
        theirs = invoker.invoke("echo0", [value], _echo)
    finally:
        lower_in_place.enabled = True
    ours = invoker.invoke("echo0", [value], _echo)
    assert _same(ours, theirs) and _same(ours, value)


#: the kinds of value an order's SQL statements, message and log lines pass to imports
CASES = RecordT((("level", EnumT(("debug", "info", "error"))),
                 ("params", ListT(VariantT((("null", None), ("int", Prim("s64")), ("text", Prim("string")))))),
                 ("reply", OptionT(Prim("string"))), ("maybe", OptionT(OptionT(Prim("u8")))),
                 ("done", ResultT(None, Prim("string"))), ("got", ResultT(ListT(Prim("u8")), None))))


def test_import_arguments_and_results_with_cases_are_the_same_either_way(engine: RuntimeEngine) -> None:
    loaded = load_component(engine, echo_component_wat([CASES]).encode())
    invoker = Invoker(loaded)
    seen: list[Any] = []

    def echo(interface: str, function: str, args: list[Any]) -> Any:
        seen.append(args[0])
        return args[0]

    values = [{"level": "info", "params": [{"text": "é✓"}, {"int": -2**63}, {"null": None}], "reply": None,
               "maybe": {"some": None}, "done": {"ok": None}, "got": {"ok": b"\x00\x01"}},
              {"level": "error", "params": [], "reply": "r", "maybe": {"some": 7}, "done": {"err": "no"},
               "got": {"err": None}}]
    for value in values:
        lower_in_place.enabled = False  # wasmtime-py's objects and the codec
        try:
            theirs = invoker.invoke("echo0", [value], echo)
        finally:
            lower_in_place.enabled = True
        ours = invoker.invoke("echo0", [value], echo)
        assert _same(ours, theirs) and _same(ours, value)
        assert _same(seen[-1], seen[-2]) and _same(seen[-1], value)  # what the import got, both ways
