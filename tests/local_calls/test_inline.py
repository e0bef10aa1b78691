"""Short calls run on the worker's event loop (host/workers/inline.py). A call that needs the
lattice, or runs past the inline budget, runs again on a Wasm thread: same answer, its log lines
written once, and the loop stays free for other calls meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from trellis.host.workers import inline
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.store import LatticeStore

from .test_colocated import RUN, link, stats

ADD = "add"


async def raw_stats(host: Any, cid: str) -> list[dict[str, Any]]:
    return [w[cid] for w in await host.components.pool.stats() if cid in w]


def log_lines(host: Any, text: str) -> int:
    logs: Path = host.settings.state_dir / "logs"
    return sum(p.read_text(errors="replace").count(text) for p in logs.glob("worker-*.log"))


@pytest.mark.parametrize("on", [True, False], ids=["inline", "TRELLIS_INLINE_CALLS=0"])
async def test_leaf_calls_run_on_the_loop_unless_turned_off(nats_server, lattice, hosts, wasm, monkeypatch, on):
    monkeypatch.setenv("TRELLIS_INLINE_CALLS", "1" if on else "0")
    h = await hosts.start(workers=1)
    inputs = ["hello", "", "ü∂" * 500, "x" * 100_000]
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["tail"]), "echo", max_instances=4)
        await c.start_component(str(wasm["adder"]), "adder")
        assert [await c.call("echo", RUN, s) for s in inputs] == inputs
        assert await asyncio.gather(*(c.call("adder", ADD, i, i) for i in range(20))) == [2 * i for i in range(20)]
        echo, adder = await stats(h, "echo"), await stats(h, "adder")
    assert echo["served"] == len(inputs) and adder["served"] == 20
    # but the call carrying 100 kB: copying its argument into Wasm (and its result out) would hold
    # the loop in host code no budget cuts short, so it goes to a Wasm thread at once
    assert echo["inline"] == {"served": len(inputs) - 1 if on else 0, "rerouted": 0}
    assert adder["inline"] == {"served": 20 if on else 0, "rerouted": 0}


@pytest.mark.parametrize("local", [True, False], ids=["local", "TRELLIS_LOCAL_CALLS=0"])
async def test_call_that_needs_the_lattice_runs_again_on_a_thread_and_logs_once(
        nats_server, lattice, hosts, wasm, monkeypatch, local):
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "1" if local else "0")
    h = await hosts.start(workers=1)
    inputs = ["one", "two", "x" * 50_000]
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, c.lattice)
        await c.start_component(str(wasm["logchain"]), "relay", max_instances=2)
        await c.start_component(str(wasm["middle"]), "second", max_instances=2)
        await c.start_component(str(wasm["tail"]), "third", max_instances=2)
        await link(store, "relay", "second", "next")
        await link(store, "second", "third", "runner")
        assert [await c.call("relay", RUN, s) for s in inputs] == inputs
        relay, third = await stats(h, "relay"), await stats(h, "third")
        (per_worker,) = await raw_stats(h, "relay")
    # the first call was cut short at its first lattice import, before it logged; the next ones
    # went straight to a Wasm thread
    assert relay["inline"] == {"served": 0, "rerouted": 1}
    assert per_worker["inline"]["needs_thread"] == ["test:chain/runner.run"]
    assert relay["served"] == len(inputs) and relay["failed"] == 0
    assert log_lines(h, "[relay] logchain: relaying") == len(inputs)  # held back, then written once
    if not local:  # the tail, reached over NATS, is a leaf: it runs on the loop
        assert third["inline"] == {"served": len(inputs), "rerouted": 0}


async def test_long_call_moves_to_a_thread_and_leaves_the_loop_free(nats_server, lattice, hosts, wasm):
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["spintail"]), "spin", limits={"timeout_s": 3})
        await c.start_component(str(wasm["adder"]), "adder")
        spinning = asyncio.create_task(c.call("spin", RUN, "s", timeout_s=10))
        # past the budget (20 ms) the spin is cut short and runs again on a Wasm thread for its
        # 3 s: meanwhile the same worker answers other calls on its loop
        for i in range(20):
            assert await c.call("adder", ADD, i, 1, timeout_s=2) == i + 1
        assert not spinning.done()
        with pytest.raises(RpcError) as err:
            await spinning
        assert err.value.kind == "timeout" and "deadline of 3" in err.value.message, err.value.message
        spin = await stats(h, "spin")
        assert spin["inline"] == {"served": 0, "rerouted": 1}

        # cut short OVERRUNS_TO_STICK times in a row: from then on straight to a thread
        await c.start_component(str(wasm["spintail"]), "spin-short", limits={"timeout_s": 0.2})
        for _ in range(inline.OVERRUNS_TO_STICK + 1):
            with pytest.raises(RpcError) as err:
                await c.call("spin-short", RUN, "again", timeout_s=5)
            assert err.value.kind == "timeout", err.value.message
        short = await stats(h, "spin-short")
        (per_worker,) = await raw_stats(h, "spin-short")
    assert short["inline"] == {"served": 0, "rerouted": inline.OVERRUNS_TO_STICK}
    assert per_worker["inline"]["needs_thread"] == ["test:chain/runner.run"]


async def test_an_overrun_now_and_then_keeps_a_function_on_the_loop(nats_server, lattice, hosts, wasm):
    """A quick function cut short once (a descheduled worker looks the same) stays inline: only
    runs past the budget several times in a row send it to a thread for good."""
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["spintail"]), "spin", limits={"timeout_s": 0.2})
        for _ in range(3):
            for _ in range(inline.OVERRUNS_TO_STICK - 1):
                with pytest.raises(RpcError):  # spins: cut at the budget, then times out on a thread
                    await c.call("spin", RUN, "s", timeout_s=5)
            assert await c.call("spin", RUN, "") == ""  # returns at once, inline
        spin = await stats(h, "spin")
        (per_worker,) = await raw_stats(h, "spin")
    assert spin["inline"] == {"served": 3, "rerouted": 3 * (inline.OVERRUNS_TO_STICK - 1)}
    assert per_worker["inline"]["needs_thread"] == []


async def test_own_timeout_below_the_budget_fails_inline_as_a_timeout(nats_server, lattice, hosts, wasm):
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["spintail"]), "spin", limits={"timeout_s": 0.005})
        with pytest.raises(RpcError) as err:
            await c.call("spin", RUN, "s")
        spin = await stats(h, "spin")
    assert err.value.kind == "timeout" and "deadline of 0.005s" in err.value.message, err.value.message
    assert spin["inline"] == {"served": 0, "rerouted": 0} and spin["failed"] == 1


async def test_preopened_directories_keep_a_component_off_the_loop(nats_server, lattice, hosts, wasm, tmp_path):
    """A component that can write files might have written before a cut: it never runs inline."""
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder",
                                wasi={"preopens": [{"host_path": str(tmp_path), "guest_path": "/data"}]})
        assert await c.call("adder", ADD, 2, 3) == 5
        (per_worker,) = await raw_stats(h, "adder")
    assert per_worker["inline"]["enabled"] is False and per_worker["inline"]["served"] == 0
