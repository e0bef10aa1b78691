"""A host's workers park an idle component (its compiled code dropped, host/runtime/parking.py)
and the next call loads it again: same answers, nothing compiled again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from trellis.interfaces.client import LatticeClient


async def _worker_stats(host: Any, cid: str) -> list[dict[str, Any]]:
    return [w[cid] for w in await host.components.pool.stats() if cid in w]


async def _until_parked(host: Any, cid: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout_s):
        while True:
            got = await _worker_stats(host, cid)
            if got and all(w["parked"] for w in got):
                return got
            await asyncio.sleep(0.2)


async def test_idle_component_is_parked_and_the_next_call_reloads_it(nats_server, lattice, hosts, wasm,
                                                                      monkeypatch):
    monkeypatch.setenv("TRELLIS_PARK_IDLE_S", "0")  # parked at the first sweep that sees it idle
    h = await hosts.start(workers=2)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder", max_instances=2)
        assert await c.call("adder", "add", 1, 2) == 3
        await _until_parked(h, "adder")
        assert await asyncio.gather(*(c.call("adder", "add", i, i) for i in range(10))) == [2 * i for i in range(10)]
        got = await _worker_stats(h, "adder")
        assert sum(w["reloads"] for w in got) >= 1  # whichever worker served them loaded it again
        assert all((w["reload_ms"] > 0) == (w["reloads"] > 0) and w["reload_ms"] >= w["last_reload_ms"] for w in got)
        await _until_parked(h, "adder")  # and idle again, parked again
        assert await c.call("adder", "add", 20, 22) == 42


async def test_parking_off_keeps_the_code_loaded(nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("TRELLIS_PARK_IDLE_S", "off")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder")
        assert await c.call("adder", "add", 1, 2) == 3
        (stats,) = await _worker_stats(h, "adder")
        assert stats["parked"] is False and stats["reloads"] == 0


def _maps_artifact(pid: int) -> bool:
    """Whether process ``pid`` has a compiled artifact (a ``.cwasm`` of the compile cache) mapped."""
    return ".cwasm" in Path(f"/proc/{pid}/maps").read_text()


async def test_a_component_is_loaded_on_a_worker_only_once_called_there(nats_server, lattice, hosts, wasm,
                                                                         monkeypatch):
    monkeypatch.setenv("TRELLIS_PARK_IDLE_S", "3600")  # no sweep parks it: what is loaded is what calls loaded
    h = await hosts.start(workers=2)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder", max_instances=2)
        got = await _worker_stats(h, "adder")
        assert len(got) == 2 and all(w["parked"] for w in got)  # deployed on both, loaded on neither
        pids = h.components.pool.pids()
        assert not any(_maps_artifact(pid) for pid in pids)
        assert await c.call("adder", "add", 1, 2) == 3
        got = await _worker_stats(h, "adder")
        assert sorted(w["parked"] for w in got) == [False, True]  # loaded where it ran, only there
        assert [_maps_artifact(pid) for pid in pids] == [not w["parked"] for w in got]


async def test_idle_sweep_sleeps_and_a_call_wakes_it(nats_server, lattice, hosts, wasm, monkeypatch):
    """Issue 16 (idle CPU): once every component is parked and no warm instance waits for its
    ``max_idle_s``, a worker's idle sweep stops ticking; the next call wakes it, so the warm
    instance that call leaves is still dropped after ``max_idle_s`` and the component parked again."""
    monkeypatch.setenv("TRELLIS_PARK_IDLE_S", "0")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "adder", reuse={"max_invocations": 100, "max_idle_s": 0.5})

        async def asleep_with_nothing_left() -> None:
            async with asyncio.timeout(20):
                while True:
                    (st,) = await _worker_stats(h, "adder")
                    (usage,) = [u for u in await h.components.pool.usage() if "adder" in u]
                    if st["sweep_asleep"] and st["parked"] and usage["adder"]["instances"] == 0:
                        return
                    await asyncio.sleep(0.1)

        for n in range(2):
            assert await c.call("adder", "add", n, 2) == n + 2  # leaves a warm instance
            await asleep_with_nothing_left()  # dropped, parked, and the sweep asleep again
