"""list<u8> crosses into and out of Wasm in bulk, byte-exact."""

from __future__ import annotations

import os
from typing import Any

from tests.components.echo import echo_component_wat
from trellis.host.runtime import Invoker, RuntimeEngine, load_component, wasmtime_patches
from trellis.host.runtime.wit import ListT, Prim, RecordT, TupleT, WitType


def test_bulk_path_is_active_and_exact(engine: RuntimeEngine) -> None:
    assert wasmtime_patches.apply()
    types: list[WitType] = [ListT(Prim("u8")), RecordT((("body", ListT(Prim("u8"))), ("n", Prim("u32")))),
             ListT(TupleT((Prim("string"), ListT(Prim("u8")))))]
    inv = Invoker(load_component(engine, echo_component_wat(types).encode()))
    seen: list[object] = []

    def handler(interface, function, args):
        seen.append(args[0])
        return args[0]

    for size in (0, 1, 255, 4096, 1024 * 1024):
        data = os.urandom(size)
        assert inv.invoke("echo0", [data], handler) == data
        assert seen[-1] == data and isinstance(seen[-1], bytes)
    rec = {"body": b"\x00\xff" * 1000, "n": 7}
    assert inv.invoke("echo1", [rec], handler) == rec
    headers = [["content-type", b"text/plain"], ["x-empty", b""]]
    assert inv.invoke("echo2", [headers], handler) == headers


def test_untagged_result_with_option_ok_carries_err(engine: RuntimeEngine) -> None:
    """result<option<list<u8>>, string>: an err string is not mistaken for the ok option."""
    from trellis.host.runtime.wit import OptionT, ResultT

    ty = ResultT(OptionT(ListT(Prim("u8"))), Prim("string"))
    inv = Invoker(load_component(engine, echo_component_wat([ty]).encode()))
    for value in ({"err": "no such key"}, {"ok": None}, {"ok": b"v"}, {"ok": b""}, {"err": ""}):
        assert inv.invoke("echo0", [value], lambda i, f, a: a[0]) == value


def test_types_are_read_once_not_per_value(engine: RuntimeEngine, monkeypatch) -> None:
    """After the first call, neither the export nor the host import reads a type from the C API
    again (wasmtime-py otherwise re-reads every record, variant and list type per value), and the
    kept types still convert every case right."""
    from wasmtime.component import _types

    from trellis.host.runtime.wit import OptionT, ResultT, VariantT

    value = VariantT((("null", None), ("int", Prim("s64")), ("text", Prim("string")), ("blob", ListT(Prim("u8")))))
    row = ListT(TupleT((Prim("string"), value)))
    ty = ResultT(ListT(row), VariantT((("invalid", Prim("string")), ("other", Prim("string")))))
    inv = Invoker(load_component(engine, echo_component_wat([ty, OptionT(RecordT((("n", Prim("u32")),)))]).encode()))
    rows = {"ok": [[["a", {"int": 1}], ["b", {"text": "x"}], ["c", {"null": None}], ["d", {"blob": b"\x00"}]]]}
    assert inv.invoke("echo0", [rows], lambda i, f, a: a[0]) == rows  # the first call reads the types

    reads: list[int] = []
    original = _types.valtype_from_ptr

    def counted(p: Any) -> Any:
        reads.append(1)
        return original(p)

    monkeypatch.setattr(_types, "valtype_from_ptr", counted)
    v: object
    for v in (rows, {"err": {"invalid": "bad sql"}}, {"err": {"other": ""}}, {"ok": []}, {"ok": [[]]}):
        assert inv.invoke("echo0", [v], lambda i, f, a: a[0]) == v
    for v in (None, {"n": 7}):
        assert inv.invoke("echo1", [v], lambda i, f, a: a[0]) == v  # its first call reads them
    n = len(reads)
    assert inv.invoke("echo1", [{"n": 8}], lambda i, f, a: a[0]) == {"n": 8}
    assert len(reads) == n and n > 0
    assert inv.invoke("echo0", [rows], lambda i, f, a: a[0]) == rows
    assert len(reads) == n


def test_strings_are_lowered_in_one_copy_and_exactly(engine: RuntimeEngine) -> None:
    """5: strings (values, field names, case names) go into C with one copy; NUL, non-ASCII and
    empty strings survive, and wrong types are refused as wasmtime-py refuses them."""
    import ctypes

    import pytest
    from wasmtime import _ffi as ffi

    from trellis.host.runtime.wit import VariantT

    assert getattr(ffi, "_trellis_fast_vecs", False)
    for text in ("", "a", "nul\x00inside", "ü∂€𝄞" * 100):
        vec = ffi.str_to_capi(text)
        assert ffi.to_str(vec) == text
        ffi.wasm_byte_vec_delete(ctypes.byref(vec))
    for data in (b"", b"\x00\xff", bytearray(b"ba")):
        vec = ffi.bytes_to_capi(data)
        assert bytes(ffi.to_bytes(vec)) == bytes(data)
        ffi.wasm_byte_vec_delete(ctypes.byref(vec))
    with pytest.raises(TypeError):
        ffi.str_to_capi(b"bytes")  # type: ignore[arg-type]  # the point: refused
    with pytest.raises(TypeError):
        ffi.bytes_to_capi("text")  # type: ignore[arg-type]  # the point: refused
    tag = VariantT((("empty", None), ("text", Prim("string"))))
    types: list[WitType] = [RecordT((("name", Prim("string")), ("tag", tag)))]
    inv = Invoker(load_component(engine, echo_component_wat(types).encode()))
    for value in ({"name": "x\x00y", "tag": {"text": "ü"}}, {"name": "", "tag": {"empty": None}}):
        assert inv.invoke("echo0", [value], lambda i, f, a: a[0]) == value


def test_value_functions_keep_the_gil_and_wasm_runs_without_it(components) -> None:
    """6: the C calls that only build, read or free values keep the GIL (with many Wasm threads in
    one worker, releasing it around each of them handed it to another thread every few µs: ~190
    context switches per full-app order on one worker); the calls that run Wasm still release it,
    so other threads (the epoch ticker, the event loop) run meanwhile."""
    import ctypes
    import threading
    import time

    import pytest
    from wasmtime import _bindings

    from trellis.host.runtime import ErrorKind, InvocationError, Limits

    held = ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]  # ctypes' flag is private
    assert wasmtime_patches.apply()
    for name in ("wasmtime_component_val_new", "wasmtime_component_val_delete", "wasmtime_component_vallist_new_uninit",
                 "wasmtime_component_valrecord_new_uninit", "wasm_byte_vec_new", "wasm_byte_vec_delete",
                 "wasmtime_component_record_type_field_nth", "wasmtime_component_resource_host_rep"):
        assert getattr(_bindings, "_" + name)._flags_ & held, f"{name} releases the GIL"
    for name in ("wasmtime_component_func_call", "wasmtime_component_func_post_return",
                 "wasmtime_component_linker_instantiate", "wasmtime_component_resource_any_drop",
                 "wasmtime_component_new", "wasmtime_store_delete", "wasmtime_engine_increment_epoch"):
        assert not getattr(_bindings, "_" + name)._flags_ & held, f"{name} keeps the GIL"

    # fuel ends the spin after seconds if the epoch ticker (a Python thread) cannot run meanwhile
    inv = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.5, fuel=2_000_000_000))
    errors: list[InvocationError] = []
    spinning = threading.Thread(target=lambda: errors.append(pytest.raises(InvocationError, inv.invoke, "spin").value))
    spinning.start()
    try:
        time.sleep(0.1)  # needs the GIL back while the guest spins on the other thread
        assert spinning.is_alive()
    finally:
        spinning.join(30)
    assert not spinning.is_alive() and errors[0].kind is ErrorKind.TIMEOUT


def test_values_past_what_one_call_carries_fail_as_too_large(engine: RuntimeEngine) -> None:
    """wasmtime's hostcall fuel: 48 bytes per list element, 128 MiB per direction of a call.
    ``trellis.interfaces.wasm_limits.MAX_BYTES_PER_CALL`` crosses; a little more fails with kind
    ``too_large`` and a message that says what the bound is, in both directions of an import."""
    import pytest

    from trellis.host.runtime import ErrorKind, InvocationError
    from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

    inv = Invoker(load_component(engine, echo_component_wat([ListT(Prim("u8"))]).encode()))
    data = os.urandom(MAX_BYTES_PER_CALL)
    assert inv.invoke("echo0", [data], lambda i, f, a: a[0]) == data
    over = data + b"\x00" * 400_000
    for handler, arg in ((lambda i, f, a: b"", over), (lambda i, f, a: over, b"x")):  # import args; its result
        with pytest.raises(InvocationError) as err:
            inv.invoke("echo0", [arg], handler)
        assert err.value.kind is ErrorKind.TOO_LARGE and "into or out of Wasm" in err.value.message
    assert inv.invoke("echo0", [b"ok"], lambda i, f, a: a[0]) == b"ok"
