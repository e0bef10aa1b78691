"""Scenario 7: hostile components share a host with a well-behaved neighbour.

The neighbour (``calc``, the adder) is measured alone, then again while an infinite
loop, a memory bomb, a trap storm and a stack overflow are called over and over on
the same host (same worker processes). Its success rate must stay 100 % and its
latency bounded; the figures are recorded.
"""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError

from ..harness import HostProcess
from .figures import record
from .load import Load

pytestmark = pytest.mark.timeout(180)

HOSTILE = {"spin": [], "bomb": [], "boom": [], "recurse": [100_000_000]}
CALLS = 800
ATTACK_S = 6.0  # the neighbour is measured for this long while the attack runs


def _rss_mb(pid: int) -> dict[str, float]:
    p = psutil.Process(pid)
    return {f"{'host' if q.pid == pid else 'worker'}-{q.pid}": round(q.memory_info().rss / 2**20, 1)
            for q in [p, *p.children(recursive=True)]}


async def test_neighbour_keeps_serving_beside_hostile_components(nats_server, lattice, tmp_path, wasm):
    host = HostProcess(nats_server.url, lattice, "--workers", "2", "--state-dir", str(tmp_path / "h"),
                       log=tmp_path / "host.log")
    await asyncio.to_thread(host.wait_started)
    try:
        async with LatticeClient(nats_server.url, lattice) as c:
            await c.start_component(str(wasm["adder"]), "calc", host_id=host.id, max_instances=8)
            await c.start_component(str(wasm["hostile"]), "hostile", host_id=host.id, max_instances=4,
                                    limits={"timeout_s": 0.5, "memory_bytes": 16 * 2**20})
            mem_before = _rss_mb(host.proc.pid)

            async with Load(c, "calc", "add", [2, 3], expect=5, concurrency=4, max_calls=CALLS, max_s=60) as alone:
                await alone.wait_ok(CALLS, 60)
            baseline = alone.summary()

            hostile_outcomes: dict[str, int] = {}
            stop = asyncio.Event()

            async def attacker(fn: str) -> None:
                for _ in range(10_000):  # bounded; stopped much earlier
                    if stop.is_set():
                        return
                    try:
                        await c.call("hostile", fn, *HOSTILE[fn], timeout_s=10)
                        key = f"{fn}:returned"
                    except RpcError as exc:
                        key = f"{fn}:{exc.kind or exc.code}"
                    hostile_outcomes[key] = hostile_outcomes.get(key, 0) + 1

            attackers = [asyncio.create_task(attacker(fn)) for fn in HOSTILE for _ in range(2)]
            try:
                t0 = time.monotonic()
                async with Load(c, "calc", "add", [2, 3], expect=5, concurrency=4, max_calls=20_000,
                                max_s=ATTACK_S) as beside:
                    await beside.finished()
                under_attack = beside.summary()
                attack_s = time.monotonic() - t0
            finally:
                stop.set()
                await asyncio.gather(*attackers)
            mem_after = _rss_mb(host.proc.pid)
            # the hostile component itself still serves its well-behaved function
            assert await c.call("hostile", "ok") == 42
            with pytest.raises(RpcError) as err:
                await c.call("hostile", "spin", timeout_s=10)
            assert err.value.kind == "timeout", err.value
        assert host.proc.poll() is None, "the host died"
    finally:
        host.stop()

    record("hostile-neighbours", neighbour_alone=baseline, neighbour_beside_hostile=under_attack,
           hostile_calls=hostile_outcomes, attack_s=round(attack_s, 1), rss_mb_before=mem_before,
           rss_mb_after=mem_after)
    assert baseline["failed"] == 0 and under_attack["failed"] == 0, (baseline, under_attack)
    assert {k.split(":")[0] for k in hostile_outcomes} == set(HOSTILE), hostile_outcomes
    assert under_attack["calls"] >= CALLS, under_attack
    # bounded: a neighbour may slow down (the machine's CPUs are shared) but never stalls
    assert under_attack["p99_ms"] < 1000, under_attack
