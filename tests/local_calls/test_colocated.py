"""Component-to-component calls between components one worker serves run in that worker,
nested on the calling thread, with the remote path's results, errors, admission and traces."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from trellis.interfaces import subjects
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.rpc_server import RpcServer
from trellis.interfaces.store import LatticeStore

from ..components_lattice.test_tracing import _spans
from ..harness import eventually

RUN = "test:chain/runner.run"


async def link(store: LatticeStore, source: str, target: str, interface: str) -> None:
    await store.put_link(Link(source_id=source, target=target, wit_namespace="test", wit_package="chain",
                              interfaces=[interface]))


async def chain(c: LatticeClient, wasm: dict, suffix: str = "", **start: Any) -> None:
    """first → second → third (chain → middle → tail), linked."""
    store = LatticeStore(c.connection, c.lattice)
    for image, cid in (("chain", "first"), ("middle", "second"), ("tail", "third")):
        await c.start_component(str(wasm[image]), cid + suffix, **start)
    await link(store, "first" + suffix, "second" + suffix, "next")
    await link(store, "second" + suffix, "third" + suffix, "runner")


async def stats(host: Any, cid: str) -> dict[str, Any]:
    """A component's worker stats on one host, summed over its workers."""
    total: dict[str, Any] = {"colocated": {}, "inline": {}}
    for per_worker in await host.components.pool.stats():
        for key, value in per_worker.get(cid, {}).items():
            if isinstance(value, dict):  # counters by name; other facts (flags, lists) are left out
                into = total.setdefault(key, {})
                for k, v in value.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        into[k] = into.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


@pytest.mark.parametrize("local", [True, False], ids=["local", "TRELLIS_LOCAL_CALLS=0"])
async def test_chain_on_one_worker_does_not_use_nats(nats_server, lattice, hosts, wasm, monkeypatch, local):
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "1" if local else "0")
    h = await hosts.start(workers=1)
    inputs = ["hello", "", "ü∂" * 500, "x" * 100_000]
    async with LatticeClient(nats_server.url, lattice) as c:
        await chain(c, wasm, max_instances=4)
        # every message on the targets' RPC subjects, besides the queue group that serves them
        subs = {t: await c.nc.subscribe(subjects.rpc(lattice, t)) for t in ("second", "third")}
        assert [await c.call("first", RUN, s) for s in inputs] == inputs
        # the worker publishes a nested call before the reply it is part of: arrived by now, if sent
        seen = {t: sub.pending_msgs for t, sub in subs.items()}
        second, third = await stats(h, "second"), await stats(h, "third")
    n = len(inputs)
    if local:
        assert seen == {"second": 0, "third": 0}
        assert second["colocated"]["served"] == n and third["colocated"]["served"] == n
        assert second["served"] == 0 and third["served"] == 0  # their RPC servers saw nothing
    else:
        assert seen == {"second": n, "third": n}
        assert second["colocated"]["served"] == 0 and second["served"] == n
    assert second["slots_in_use"] == 0 and third["slots_in_use"] == 0


async def _failures(c: LatticeClient, wasm: dict) -> list[tuple[str, str, str]]:
    """Calls that fail in the called component, each as (code, kind, message)."""
    store = LatticeStore(c.connection, c.lattice)
    # the tail may not grow its memory: a long input traps it (the target's own limits apply)
    await c.start_component(str(wasm["chain"]), "first")
    await c.start_component(str(wasm["middle"]), "second")
    await c.start_component(str(wasm["tail"]), "third", limits={"memory_bytes": 65536})
    await link(store, "first", "second", "next")
    await link(store, "second", "third", "runner")
    # a target without the export
    await c.start_component(str(wasm["chain"]), "asks-wrong")
    await c.start_component(str(wasm["tail"]), "wrong")
    await link(store, "asks-wrong", "wrong", "next")
    # a target whose own import has no link
    await c.start_component(str(wasm["chain"]), "asks-unlinked")
    await c.start_component(str(wasm["middle"]), "unlinked")
    await link(store, "asks-unlinked", "unlinked", "next")
    # a target out of fuel (its engine meters, its caller's does not)
    await c.start_component(str(wasm["chain"]), "asks-fuel")
    await c.start_component(str(wasm["middle"]), "fuel-middle")
    await c.start_component(str(wasm["tail"]), "fuel-tail", limits={"fuel": 10})
    await link(store, "asks-fuel", "fuel-middle", "next")
    await link(store, "fuel-middle", "fuel-tail", "runner")
    assert await c.call("first", RUN, "short") == "short"
    out = []
    for cid, arg in (("first", "y" * 100_000), ("asks-wrong", "a"), ("asks-unlinked", "b"),
                     ("asks-fuel", "z" * 100_000)):
        with pytest.raises(RpcError) as err:
            await c.call(cid, RUN, arg)
        out.append((str(err.value.code), err.value.kind, err.value.message))
    return out


async def test_errors_in_the_target_are_those_of_the_remote_path(nats_server, lattice, hosts, wasm, monkeypatch):
    remote_lattice = lattice + "r"
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "0")
    await hosts.start(workers=1, lattice=remote_lattice)
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "1")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, remote_lattice) as c:
        remote = await _failures(c, wasm)
    async with LatticeClient(nats_server.url, lattice) as c:
        local = await _failures(c, wasm)
    assert local == remote
    kinds = [kind for _, kind, _ in local]
    assert kinds == ["import_failed"] * 4, local
    assert "third: " in local[0][2] and "unreachable" in local[0][2]
    assert "no exported function 'test:chain/next.call'" in local[1][2]
    assert "unlinked: import test:chain/runner.run is not linked" in local[2][2]
    assert "fuel-tail: fuel budget of 10 exhausted" in local[3][2], local[3][2]
    for cid in ("third", "wrong", "unlinked", "fuel-tail"):  # each failed in process
        assert (await stats(h, cid))["colocated"]["failed"] >= 1, cid


async def test_saturated_local_target_falls_back_to_another_host(nats_server, lattice, hosts, wasm):
    """second's one slot on host A is taken (and its queue full): first, also on A, reaches the
    instance of second on host B over NATS."""
    a = await hosts.start(workers=1, labels={"role": "a"})
    b = await hosts.start(workers=1, labels={"role": "b"})
    held, release = asyncio.Event(), asyncio.Event()

    async def slow(inv):  # the target of second's runner import, served by this test
        if inv.args[0] == "hold":
            held.set()
            await release.wait()
            return "held"
        return inv.args[0]

    async with LatticeClient(nats_server.url, lattice) as c:
        server = RpcServer(c.connection, lattice, "slow", slow)
        await server.start()
        store = LatticeStore(c.connection, lattice)
        await c.start_component(str(wasm["chain"]), "first", host_id=a.id, max_instances=2)
        await c.start_component(str(wasm["middle"]), "second", host_id=a.id, max_instances=1)
        await link(store, "first", "second", "next")
        await link(store, "second", "slow", "runner")
        # one call runs (held in slow), 16 wait in A's queue: its RPC server now answers busy
        holders = [asyncio.create_task(c.call("second", "test:chain/next.call", "hold", timeout_s=60))
                   for _ in range(17)]
        await eventually(held.is_set, 10, what="the first hold call in slow")

        async def full() -> bool:
            return (await stats(a, "second"))["inflight"] == 17

        await eventually(full, 10, what="A's queue for second full")
        await c.start_component(str(wasm["middle"]), "second", host_id=b.id, max_instances=2)
        assert await c.call("first", RUN, "x", timeout_s=30) == "x"
        on_a, on_b = await stats(a, "second"), await stats(b, "second")
        assert on_a["colocated"]["no_slot"] >= 1 and on_a["colocated"]["served"] == 0
        assert on_b["served"] == 1
        release.set()
        assert await asyncio.gather(*holders) == ["held"] * 17
        # with its slot free again, second runs in A's worker
        assert await c.call("first", RUN, "again") == "again"
        assert (await stats(a, "second"))["colocated"]["served"] == 1
        await server.stop()


@pytest.mark.parametrize("local", [True, False], ids=["local", "TRELLIS_LOCAL_CALLS=0"])
async def test_the_callers_deadline_stops_a_nested_target(nats_server, lattice, hosts, wasm, monkeypatch, local):
    """A target that never returns, with an 8 s timeout of its own, called with 1 s left: the caller
    fails at its deadline either way; in process, the target stops then too and frees its slot."""
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "1" if local else "0")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        await c.start_component(str(wasm["chain"]), "first")
        await c.start_component(str(wasm["middle"]), "second")
        await c.start_component(str(wasm["spintail"]), "spin", limits={"timeout_s": 8})
        await link(store, "first", "second", "next")
        await link(store, "second", "spin", "runner")
        started = time.monotonic()
        with pytest.raises(RpcError) as err:
            await c.call("first", RUN, "s", timeout_s=1)
        assert err.value.kind == "timeout", err.value.message

        async def stopped() -> float:
            return time.monotonic() - started if (await stats(h, "spin"))["slots_in_use"] == 0 else 0.0

        took = await eventually(stopped, 15, what="the spin to stop")
        spin = await stats(h, "spin")
    if local:
        assert took < 4, f"the nested spin ran {took:.1f}s, past the caller's 1 s deadline"
        assert spin["colocated"]["failed"] == 1
    else:  # over NATS it runs on to its own timeout
        assert took >= 7, took
        assert spin["failed"] == 1


@pytest.mark.parametrize("shape", ["self", "pair"])
async def test_self_calls_and_cycles_end_at_the_deadline(nats_server, lattice, hosts, wasm, shape):
    """A component that calls itself (or a pair calling each other) nests in process up to the depth
    bound, then goes over NATS; the call fails at its deadline and everything unwinds."""
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        if shape == "self":
            await c.start_component(str(wasm["selfcall"]), "loop", max_instances=20)
            await link(store, "loop", "loop", "runner")
            cids = ["loop"]
        else:
            await c.start_component(str(wasm["chain"]), "loop", max_instances=20)
            await c.start_component(str(wasm["middle"]), "back", max_instances=20)
            await link(store, "loop", "back", "next")
            await link(store, "back", "loop", "runner")
            cids = ["loop", "back"]
        started = time.monotonic()
        with pytest.raises(RpcError) as err:
            await c.call("loop", RUN, "round", timeout_s=3)
        assert time.monotonic() - started < 10, "the cycle outlived its deadline"
        assert err.value.kind in ("timeout", "import_failed"), err.value.message
        per_cid = [await stats(h, cid) for cid in cids]
        assert sum(s["colocated"]["too_deep"] for s in per_cid) >= 1, per_cid

        async def unwound() -> bool:
            per_cid = [await stats(h, cid) for cid in cids]
            return all(s["inflight"] == 0 and s["slots_in_use"] == 0 for s in per_cid)

        await eventually(unwound, 15, what="every nested call to unwind and give its slot back")
        # the worker still serves, in process: point the loop at a tail
        await c.start_component(str(wasm["tail"]), "end")
        if shape == "self":
            await store.delete_link("loop", "test", "chain")
            await link(store, "loop", "end", "runner")
        else:
            await store.delete_link("back", "test", "chain")
            await link(store, "back", "end", "runner")

        async def served() -> bool:
            try:
                return await c.call("loop", RUN, "done", timeout_s=5) == "done"
            except RpcError:
                return False

        await eventually(served, 10, what="the loop, relinked to a tail, to answer")


async def test_colocated_chain_is_one_trace(nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await chain(c, wasm)
        import secrets

        trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
        traceparent = f"00-{trace_id}-{root}-01"
        assert await c.rpc.call("first", RUN, ["t"], trace={"traceparent": traceparent}) == "t"
        assert (await stats(h, "third"))["colocated"]["served"] == 1

    def ours() -> list[dict]:
        found = [s for s in _spans([h.settings.state_dir]) if s["context"]["trace_id"] == "0x" + trace_id]
        return found if len(found) >= 3 else []

    spans = await eventually(ours, 10, what="spans of all three components")
    by_name = {s["name"].split()[1]: s for s in spans}
    assert by_name["first"]["parent_id"] == "0x" + root
    assert by_name["second"]["parent_id"] == by_name["first"]["context"]["span_id"]
    assert by_name["third"]["parent_id"] == by_name["second"]["context"]["span_id"]
    assert by_name["second"]["attributes"].get("trellis.colocated") is True
