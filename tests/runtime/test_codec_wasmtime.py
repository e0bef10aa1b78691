"""Codec round trips through wasmtime and the canonical ABI.

Each example builds an echo component (tests/components/echo.py) whose
exports lower the value into linear memory, lift it to call the host import,
and carry the import's answer back the same way. The handler sees the value
as plain data, so both directions of the codec meet real wasmtime-py
conversions and wasmtime's own type checks.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.components.echo import ECHO_INTERFACE, echo_component_wat
from trellis.host.runtime import CodecError, ErrorKind, InvocationError, Invoker, RuntimeEngine, load_component
from trellis.host.runtime.codec import Plain, from_plain
from trellis.host.runtime.wit import (
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

from .strategies import plain_values, wit_types

KITCHEN: list[tuple[WitType, Plain]] = [
    (
        RecordT(
            (
                ("order-number", Prim("u32")),
                ("line-items", ListT(RecordT((("sku", Prim("string")), ("price", Prim("u32")))))),
                ("note", OptionT(Prim("string"))),
                ("status", EnumT(("open", "paid", "shipped"))),
                ("flags", FlagsT(("gift", "express"))),
            )
        ),
        {
            "order-number": 4711,
            "line-items": [{"sku": "tea", "price": 350}, {"sku": "mug", "price": 1200}],
            "note": "ring twice",
            "status": "paid",
            "flags": ["express"],
        },
    ),
    (VariantT((("none", None), ("text", Prim("string")), ("count", Prim("u64")))), {"count": 2**64 - 1}),
    (ResultT(Prim("u64"), Prim("string")), {"err": "insufficient funds"}),
    (ResultT(OptionT(Prim("string")), Prim("string")), {"ok": None}),
    (OptionT(OptionT(Prim("s8"))), {"some": None}),
    (TupleT((Prim("f32"), Prim("f64"), Prim("char"), ListT(Prim("u8")))), [1.5, -2.25, "∑", b"\x00\xff"]),
    (TupleT(tuple(Prim("u64") for _ in range(17))), list(range(17))),  # > 16 flat params
    (ResultT(None, None), {"ok": None}),
]


def _echo(engine: RuntimeEngine, types: list[WitType]) -> Invoker:
    loaded = load_component(engine, echo_component_wat(types).encode())
    return Invoker(loaded)


def _echo_handler(seen: list[Plain]) -> Any:
    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        assert interface == ECHO_INTERFACE
        seen.append(args[0])
        return args[0]

    return handler


def test_kitchen_sink_round_trips(engine: RuntimeEngine) -> None:
    inv = _echo(engine, [t for t, _ in KITCHEN])
    for i, (_, plain) in enumerate(KITCHEN):
        seen: list[Plain] = []
        assert inv.invoke(f"echo{i}", [plain], _echo_handler(seen)) == plain
        assert seen == [plain]  # the import saw the same plain value


def test_describe_spells_the_types(engine: RuntimeEngine) -> None:
    inv = _echo(engine, [t for t, _ in KITCHEN[:3]])
    fns = {f["name"]: f for f in inv.loaded.describe()["exports"]["functions"]}
    assert fns["echo0"]["params"][0]["type"].startswith("record { order-number: u32, line-items: list<record {")
    assert fns["echo2"]["result"] == "result<u64, string>"


def test_wrong_answer_from_import_is_caught(engine: RuntimeEngine) -> None:
    inv = _echo(engine, [KITCHEN[0][0]])
    bad = dict(KITCHEN[0][1], status="lost")
    try:
        inv.invoke("echo0", [KITCHEN[0][1]], lambda i, f, a: bad)
    except InvocationError as e:
        assert e.kind is ErrorKind.IMPORT_FAILED
        assert "result.status: expected one of ['open', 'paid', 'shipped'], got 'lost'" in e.message
    else:  # pragma: no cover
        raise AssertionError("expected an import failure")


@st.composite
def _cases(draw: st.DrawFn) -> list[tuple[WitType, Plain]]:
    types = draw(st.lists(wit_types, min_size=1, max_size=3))
    return [(t, draw(plain_values(t))) for t in types]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_cases())
def test_generated_types_round_trip_through_wasmtime(engine: RuntimeEngine, cases: list[tuple[WitType, Plain]]) -> None:
    for ty, plain in cases:
        try:
            from_plain(ty, plain)
        except CodecError as e:
            assume("faithfully" not in str(e))  # the documented wasmtime-py gap
            raise
    inv = _echo(engine, [t for t, _ in cases])
    for i, (_, plain) in enumerate(cases):
        seen: list[Plain] = []
        assert inv.invoke(f"echo{i}", [plain], _echo_handler(seen)) == plain
        assert seen == [plain]
