"""Values written straight from their plain form (trellis.host.runtime.lower_plain) are the values
``from_plain`` and wasmtime-py's conversion make; a value it does not take is left to them, with
nothing written and nothing leaked."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasmtime import _ffi as ffi

from trellis.host.runtime import CodecError, RuntimeEngine, from_plain, lower_in_place, lower_plain
from trellis.host.runtime.call import PlainArg
from trellis.host.runtime.wit import EnumT, ListT, OptionT, Prim, RecordT, ResultT, TupleT, VariantT, WitType

from .strategies import plain_values, wit_types
from .test_lower_in_place import ROWS, _round_trip, _rss_mib, _same, _valtypes


def _written(vt: Any, ty: Any, plain: Any) -> tuple[bool, Any]:
    """Whether lower_plain wrote ``plain``, and the value read back (None when it did not)."""
    raw = ffi.wasmtime_component_val_t()
    if not lower_plain.lower_root(ty, plain, ctypes.pointer(raw)):
        assert raw.kind == ffi.WASMTIME_COMPONENT_BOOL.value  # left as wasmtime-py leaves a slot
        return False, None
    return True, vt.convert_from_c(raw)  # frees it


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_the_same_values_as_from_plain_and_wasmtime_py(engine: RuntimeEngine, data: st.DataObject) -> None:
    types = data.draw(st.lists(wit_types, min_size=1, max_size=3))
    (vts, store) = _valtypes(engine, types)
    for ty, vt in zip(types, vts, strict=True):
        plain = data.draw(plain_values(ty))
        wrote, ours = _written(vt, ty, plain)
        try:
            value = from_plain(ty, plain)
        except CodecError as e:
            # written only where wasmtime-py's objects could not carry the case faithfully
            assert not wrote or "faithfully" in str(e), (ty, plain, e)
            continue
        if lower_plain.plain_writer(ty) is None:  # flags: from_plain and wasmtime-py's conversion
            assert not wrote
            continue
        assert wrote, (ty, plain)  # what the strategies draw is the common form
        assert _same(ours, _round_trip(vt, store, value, False)), (ty, plain, ours)


def test_what_it_does_not_take_is_left_to_from_plain(engine: RuntimeEngine) -> None:
    types: list[WitType] = [Prim("u8"), Prim("f64"), Prim("string"), ListT(Prim("u8")), OptionT(OptionT(Prim("u32"))),
             EnumT(("a", "b")), VariantT((("x", None), ("y", Prim("s32")))), RecordT((("a", Prim("u32")),)),
             ResultT(Prim("u32"), None), TupleT((Prim("u32"), Prim("string")))]
    vts, store = _valtypes(engine, types)
    refused = [(0, 256), (0, True), (2, "\ud800"), (4, 5), (5, "c"), (6, "y"), (6, {"z": None}), (7, {"a": 1, "b": 2}),
               (8, {"ok": 1, "err": None}), (9, [1]), (9, (1, 2))]
    for i, plain in refused:  # wrong: from_plain names what is wrong
        assert _written(vts[i], types[i], plain) == (False, None), (types[i], plain)
        with pytest.raises(CodecError):
            from_plain(types[i], plain)
    uncommon = [(1, 3), (3, [1, 2])]
    for i, plain in uncommon:  # valid but unusual: from_plain converts it
        assert _written(vts[i], types[i], plain) == (False, None), (types[i], plain)
        assert _same(_round_trip(vts[i], store, from_plain(types[i], plain), False),
                     _round_trip(vts[i], store, from_plain(types[i], plain), True))


def test_bytes_from_a_buffer_are_written(engine: RuntimeEngine) -> None:
    (vt,), _ = _valtypes(engine, [ListT(Prim("u8"))])
    for body in (b"abc", bytearray(b"abc"), memoryview(b"xabc")[1:]):
        assert _written(vt, ListT(Prim("u8")), body) == (True, b"abc")


def test_an_untagged_variant_wasmtime_py_cannot_tell_apart_is_written_faithfully(engine: RuntimeEngine) -> None:
    ty = VariantT((("a", ListT(Prim("u32"))), ("b", TupleT((Prim("u32"),)))))  # list and tuple: both lists here
    (vt,), _ = _valtypes(engine, [ty])
    assert _written(vt, ty, {"b": [7]}) == (True, (7,))


def test_a_query_result_is_written_and_one_that_fails_part_way_is_freed(engine: RuntimeEngine) -> None:
    """The SQL provider's answer of 2,000 rows: written as wasmtime-py's conversion writes it; with
    its last cell wrong, each try undoes what it wrote (60 tries of ~1.5 MB each would otherwise
    grow the process by ~90 MiB)."""
    (vt,), store = _valtypes(engine, [ROWS])
    rows = [[["sku", {"text": f"ENG-{i}"}], ["price", {"int": 1000}], ["gone", "null"]] for i in range(2000)]
    wrote, ours = _written(vt, ROWS, {"ok": rows})
    assert wrote and _same(ours, _round_trip(vt, store, from_plain(ROWS, {"ok": rows}), False))
    rows[-1][-1] = ["price", {"int": object()}]
    assert lower_in_place.active()
    before = _rss_mib()
    for _ in range(60):
        assert _written(vt, ROWS, {"ok": rows}) == (False, None)
    grown = _rss_mib() - before
    assert grown < 40, f"{grown:.0f} MiB more after 60 refused values"


def test_turned_off_nothing_is_written(engine: RuntimeEngine) -> None:
    (vt,), _ = _valtypes(engine, [Prim("u32")])
    lower_plain.enabled = False
    try:
        assert _written(vt, Prim("u32"), 5) == (False, None)
    finally:
        lower_plain.enabled = True
    assert _written(vt, Prim("u32"), 5) == (True, 5)


def test_an_export_argument_written_ahead_is_moved_once_or_freed(engine: RuntimeEngine) -> None:
    """An export's argument is written when the call's arguments are checked (``PlainArg``): lowering
    moves it into the call's slot once; one the call never took is freed (60 of ~1.5 MB each)."""
    (vt,), store = _valtypes(engine, [ROWS])
    rows = {"ok": [[["sku", {"text": f"ENG-{i}"}], ["price", {"int": 1000}]] for i in range(2000)]}
    arg = PlainArg.of(ROWS, rows)
    assert arg is not None and PlainArg.of(ROWS, {"ok": [[["sku", 5]]]}) is None  # from_plain names that one
    slot = ffi.wasmtime_component_val_t()
    arg.lower_into(0, ctypes.addressof(slot))
    with pytest.raises(RuntimeError, match="lowered twice"):
        arg.lower_into(0, ctypes.addressof(slot))
    assert _same(vt.convert_from_c(slot), _round_trip(vt, store, from_plain(ROWS, rows), False))
    before = _rss_mib()
    for _ in range(60):
        assert PlainArg.of(ROWS, rows) is not None  # dropped unmoved
    grown = _rss_mib() - before
    assert grown < 40, f"{grown:.0f} MiB more after 60 arguments never lowered"
