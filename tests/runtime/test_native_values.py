"""Values written and read by the C extension (trellis.host.runtime.native_values) are the values
the Python ways make (lower_in_place after the codec; lift_in_place's readers), values it does not
take as they are fall back to them, and a call gives the same result and errors with it on or off."""

from __future__ import annotations

import ctypes
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasmtime import _ffi as ffi

from tests.components.echo import echo_component_wat
from trellis.host.runtime import (
    CodecError,
    InvocationError,
    Invoker,
    RuntimeEngine,
    from_plain,
    lift_in_place,
    load_component,
    native_values,
    wasmtime_patches,
)
from trellis.host.runtime.wit import ListT, Prim, RecordT, TupleT

from .strategies import plain_values, wit_types
from .test_lower_in_place import _valtypes

HEADERS = ListT(TupleT((Prim("string"), ListT(Prim("u8")))))
REQUEST = RecordT((("method", Prim("string")), ("path-with-query", Prim("string")), ("headers", HEADERS),
                   ("body", ListT(Prim("u8")))))
NUMBERS = RecordT((("a", Prim("s8")), ("b", Prim("u16")), ("c", Prim("s32")), ("d", Prim("u64")),
                   ("e", Prim("f32")), ("f", Prim("f64")), ("g", Prim("char")), ("h", Prim("bool")),
                   ("i", Prim("s64")), ("j", Prim("u8")), ("k", Prim("u32")), ("l", Prim("s16"))))


@pytest.fixture(autouse=True)
def _active() -> None:
    assert wasmtime_patches.apply() and native_values.active(), "the extension did not build (a C compiler?)"


def _python_lowered(vt: Any, store: Any, ty: Any, plain: Any) -> Any:
    raw = ffi.wasmtime_component_val_t()
    vt.convert_to_c(store, from_plain(ty, plain), ctypes.pointer(raw))
    return raw


def _read(read: Any, raw: Any) -> Any:
    """The plain form of ``raw`` by ``read``; ``raw`` is freed."""
    return lift_in_place.lift_root(read, raw)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_read_and_written_as_the_python_ways_do(engine: RuntimeEngine, data: st.DataObject) -> None:
    types = [REQUEST, NUMBERS, *data.draw(st.lists(wit_types, min_size=1, max_size=3))]
    vts, store = _valtypes(engine, types)
    python_vts, _ = _valtypes(engine, types)  # types of their own: readers are kept on them, children's too
    native_values.enabled = False
    try:
        python_readers = [lift_in_place.reader(vt) for vt in python_vts]
    finally:
        native_values.enabled = True
    for ty, vt, python_read in zip(types, vts, python_readers, strict=True):
        plain = data.draw(plain_values(ty))
        try:
            from_plain(ty, plain)
        except CodecError:
            continue  # the documented wasmtime-py gap (a value it cannot pass faithfully)
        native_read = native_values.reader(vt)
        assert native_read is None or type(native_read) is type(native_values.reader(vts[0]))
        assert (python_read is None) == (native_read is None), ty  # the same types, but flags and resources
        if python_read is None:
            continue
        theirs = _read(python_read, _python_lowered(vt, store, ty, plain))
        assert _same(_read(native_read, _python_lowered(vt, store, ty, plain)), theirs), (ty, plain)
        writer = native_values.lowerer(ty)
        if writer is None:  # variants, options, results, enums: the codec picks their case
            continue
        arg = native_values.lower(writer, plain)
        if arg is None:  # a value not taken as it is (a tuple given as a tuple, ...)
            continue
        raw = ffi.wasmtime_component_val_t()
        arg.lower_into(0, ctypes.addressof(raw))
        assert _same(_read(python_read, raw), theirs), (ty, plain)


def test_values_not_taken_as_they_are_fall_back(engine: RuntimeEngine) -> None:
    (vt,), _ = _valtypes(engine, [REQUEST])
    writer = native_values.lowerer(REQUEST)
    good = {"method": "GET", "path-with-query": "/", "headers": [["a", b"b"], ("c", b"")], "body": b"x"}
    assert native_values.lower(writer, good) is not None
    bad = [{**good, "extra": 1}, {k: v for k, v in good.items() if k != "body"}, {**good, "body": bytearray(b"x")},
           {**good, "method": "\ud800"}, {**good, "headers": [["a", b"b", b"c"]]}, {**good, "headers": (("a", b""),)},
           {**good, "method": 1}, [good], None]
    for value in bad:  # none written: the codec's way then converts it, or says what is wrong
        assert native_values.lower(writer, value) is None, value
    numbers = native_values.lowerer(NUMBERS)
    ok = {"a": -128, "b": 65535, "c": -2**31, "d": 2**64 - 1, "e": 1.5, "f": -0.0, "g": "✓", "h": True,
          "i": -2**63, "j": 255, "k": 2**32 - 1, "l": -2**15}
    assert native_values.lower(numbers, ok) is not None
    for field, value in [("a", 128), ("b", -1), ("d", 2**64), ("i", 2**63), ("j", True), ("e", 1e39), ("e", 1),
                         ("h", 1), ("g", "ab"), ("g", "\udc00"), ("k", 2**32), ("l", 2**15), ("f", 2)]:
        assert native_values.lower(numbers, {**ok, field: value}) is None, (field, value)


def _echo(interface: str, function: str, args: list[Any]) -> Any:
    return args[0]


def test_a_call_gives_the_same_result_and_errors_with_it_on_or_off(engine: RuntimeEngine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_component(engine, echo_component_wat([REQUEST, NUMBERS]).encode())
    request = {"method": "POST", "path-with-query": "/orders?é", "headers": [["content-type", b"application/json"]],
               "body": b"[1]" * 100}
    numbers = {"a": -1, "b": 2, "c": 3, "d": 2**64 - 1, "e": 0.25, "f": 1e300, "g": "é", "h": False, "i": 5,
               "j": 6, "k": 7, "l": 8}
    bad = [{**request, "body": "text"}, {k: v for k, v in request.items() if k != "headers"},
           {**request, "headers": [["a"]]}]
    results = []
    for on in (True, False):
        monkeypatch.setattr(native_values, "enabled", on)
        invoker = Invoker(loaded)
        got = [invoker.invoke("echo0", [request], _echo), invoker.invoke("echo1", [numbers], _echo),
               invoker.invoke("echo0", [{**request, "headers": (("x", bytearray(b"y")),)}], _echo)]
        for value in bad:
            with pytest.raises(InvocationError) as failed:
                invoker.invoke("echo0", [value], _echo)
            got.append((failed.value.kind, failed.value.message))
        results.append(got)
    assert _same(results[0][:3], results[1][:3]) and results[0][3:] == results[1][3:]
    assert _same(results[0][0], request) and _same(results[0][1], numbers)


def test_switched_off_nothing_is_built_natively(engine: RuntimeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_values, "enabled", False)
    (vt,), _ = _valtypes(engine, [TupleT((Prim("u8"), Prim("string")))])
    assert native_values.reader(vt) is None and native_values.lowerer(REQUEST) is None
    assert not native_values.active()
