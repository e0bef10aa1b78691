"""Runtime tuning (host/tuning.py): the TRELLIS_* variables are read once into the host's settings
and handed to its workers at their start; their off-paths serve the same answers."""

from __future__ import annotations

import logging

import pytest

from trellis.host.runtime import wasmtime_patches
from trellis.host.tuning import Tuning
from trellis.interfaces.client import LatticeClient

from .test_colocated import RUN, chain, stats
from .test_records import usage


def test_defaults_and_every_variable() -> None:
    assert Tuning.from_env({}) == Tuning()
    off = {var: "0" for var, where in Tuning.variables().items()
           if isinstance(_get(Tuning(), where), bool)}
    # every switch is named here, so a new one is a deliberate, documented addition
    assert set(Tuning.variables()) == {
        "TRELLIS_INLINE_CALLS", "TRELLIS_INLINE_BUDGET_MS", "TRELLIS_LOCAL_CALLS", "TRELLIS_LOCAL_CALLS_MAX_DEPTH",
        "TRELLIS_LOCAL_PROVIDERS", "TRELLIS_HTTP_HANDOFF", "TRELLIS_HTTP_STREAMS", "TRELLIS_HOLD_GIL",
        "TRELLIS_LOWER_IN_PLACE", "TRELLIS_WASI_HTTP_FAST", "TRELLIS_WASI_HTTP_NATIVE", "TRELLIS_WASM_PROFILER",
        "TRELLIS_WASI_HTTP_NATIVE_STATE", "TRELLIS_NATIVE_VALUES", "TRELLIS_NATIVE_TICKER", "TRELLIS_METRICS",
        "TRELLIS_WASM_HOLD_GIL", "TRELLIS_WASM_HOLD_GIL_SLICE_MS", "TRELLIS_LOWER_PLAIN",
        "TRELLIS_GC_THRESHOLD", "TRELLIS_PARK_IDLE_S", "TRELLIS_WORKER_NICE",
        "TRELLIS_PROVIDER_GROUP", "TRELLIS_PROVIDERS_IN_HOST", "TRELLIS_HTTP_ACTIVE_MAX", "TRELLIS_WORKER_ZYGOTE",
        "TRELLIS_ZYGOTE_FROM_HOST", "TRELLIS_ZYGOTE_LEAN_AFTER_S"}
    assert len(off) == 19 and all(v is False for v in _bools(Tuning.from_env(off)))
    for spelling in ("false", "No", " off "):
        assert Tuning.from_env({"TRELLIS_METRICS": spelling}).process.metrics is False
    assert Tuning.from_env({"TRELLIS_METRICS": "yes"}).process.metrics is True
    t = Tuning.from_env({"TRELLIS_INLINE_BUDGET_MS": "2.5", "TRELLIS_LOCAL_CALLS_MAX_DEPTH": "3",
                         "TRELLIS_GC_THRESHOLD": "default", "TRELLIS_WASM_PROFILER": "perfmap"})
    assert (t.calls.inline_budget_ms, t.calls.local_calls_max_depth, t.process.gc_threshold,
            t.wasm.profiler) == (2.5, 3, None, "perfmap")


@pytest.mark.parametrize("var, value", [("TRELLIS_INLINE_BUDGET_MS", "fast"), ("TRELLIS_LOCAL_CALLS_MAX_DEPTH", "-1"),
                                        ("TRELLIS_GC_THRESHOLD", "0"), ("TRELLIS_GC_THRESHOLD", "lots")])
def test_a_bad_value_is_named_and_the_default_kept(var: str, value: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="trellis.host.tuning"):
        assert Tuning.from_env({var: value}) == Tuning()
    assert f"{var}={value!r} ignored" in caplog.text and "using" in caplog.text


def test_holding_the_gil_can_be_switched_off_and_on_again() -> None:
    from wasmtime import _ffi as ffi

    held = vars(ffi)["_trellis_gil_held"]
    assert held > 0  # applied at the session's start (tests/conftest.py)
    try:
        wasmtime_patches.hold_gil(False)
        assert vars(ffi)["_trellis_gil_held"] == 0
    finally:
        wasmtime_patches.hold_gil(True)
    assert vars(ffi)["_trellis_gil_held"] == held


async def test_the_off_paths_answer_alike(nats_server, lattice, hosts, wasm, monkeypatch):
    """A host whose workers run with every optimisation switched off (or to its limit) gives the
    same answers; the counters show the off-paths were taken."""
    for var, value in {"TRELLIS_METRICS": "0", "TRELLIS_HOLD_GIL": "0", "TRELLIS_LOWER_IN_PLACE": "0",
                       "TRELLIS_WASI_HTTP_FAST": "0", "TRELLIS_WASI_HTTP_NATIVE": "0",
                       "TRELLIS_WASI_HTTP_NATIVE_STATE": "0", "TRELLIS_NATIVE_VALUES": "0",
                       "TRELLIS_NATIVE_TICKER": "0", "TRELLIS_WASM_HOLD_GIL": "0", "TRELLIS_LOWER_PLAIN": "0",
                       "TRELLIS_INLINE_BUDGET_MS": "0", "TRELLIS_LOCAL_CALLS_MAX_DEPTH": "0",
                       "TRELLIS_GC_THRESHOLD": "default", "TRELLIS_WASM_PROFILER": "bogus"}.items():
        monkeypatch.setenv(var, value)
    h = await hosts.start(workers=1)
    assert h.settings.tuning.calls.local_calls_max_depth == 0 and h.settings.tuning.process.metrics is False
    for var in ("TRELLIS_METRICS", "TRELLIS_INLINE_BUDGET_MS", "TRELLIS_LOCAL_CALLS_MAX_DEPTH"):
        monkeypatch.delenv(var)  # the workers read the host's settings, not the environment
    inputs = ["hello", "", "ü∂" * 500, "x" * 50_000]
    async with LatticeClient(nats_server.url, lattice) as c:
        await chain(c, wasm, max_instances=2)
        await c.start_component(str(wasm["adder"]), "adder")
        assert [await c.call("first", RUN, s) for s in inputs] == inputs
        assert [await c.call("adder", "add", i, 1) for i in range(5)] == [1, 2, 3, 4, 5]
        second, adder = await stats(h, "second"), await stats(h, "adder")
        u = await usage(h)
    n = len(inputs)
    assert second["colocated"]["too_deep"] == n and second["served"] == n  # over NATS, not nested
    assert adder["inline"]["served"] == 0 and adder["served"] == 5  # no inline budget: on threads
    assert all(not one.get("invocations") for one in u.values())  # nothing measured per call


async def test_the_host_settings_win_over_the_workers_environment(nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("TRELLIS_INLINE_CALLS", "0")  # in the environment the workers inherit
    h = await hosts.start(workers=1, tuning=Tuning())
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder")
        assert [await c.call("adder", "add", i, i) for i in range(3)] == [0, 2, 4]
        assert (await stats(h, "adder"))["inline"]["served"] == 3


def _get(t: Tuning, where: str) -> object:
    group, name = where.split(".")
    return getattr(getattr(t, group), name)


def _bools(t: Tuning) -> list[object]:
    return [_get(t, where) for where in Tuning.variables().values() if isinstance(_get(t, where), bool)]
