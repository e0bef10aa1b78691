"""Scenario 1: a component on three machines under 20 calls in flight; one host is SIGKILLed."""

from __future__ import annotations

import time

import pytest

from tests.cluster import Cluster

from .figures import record
from .load import Load

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


def test_host_killed_under_load_placed_by_hand(cluster: Cluster, wasm):
    """Placed by hand on every machine: the calls in flight on the dead host fail over; none fails."""
    hosts = cluster.start_hosts()
    # NATS gives a queue-group message to a subscriber on the publisher's own node when it
    # can: the client talks through m0's node, so m0's host serves the calls, and dies.
    victim = cluster.machines[0]

    async def scenario() -> dict:
        async with cluster.client(via=victim) as c:
            for h in hosts:
                await c.start_component(str(wasm["hostile"]), "svc", host_id=h.id, max_instances=20)
            async with Load(c, "svc", "ok", expect=42, concurrency=20, max_s=60) as load:
                await load.wait_ok(300)
                killed_at = time.monotonic()
                cluster.kill_host(victim)
                await load.wait_ok(1000)
            after = load.summary(since=killed_at)
            return {"load": load.summary(), "after_kill": after, "rpc": dict(c.rpc.stats)}

    result = cluster.run(scenario())
    record("host-kill-by-hand", failed_calls=result["load"]["failed"], calls=result["load"]["calls"],
           worst_latency_ms_after_kill=result["after_kill"]["max_ms"], retries=result["rpc"]["retries"],
           lost_in_flight=result["rpc"]["lost"], p50_ms=result["load"]["p50_ms"])
    assert result["load"]["failed"] == 0, result
