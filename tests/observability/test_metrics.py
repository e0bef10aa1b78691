"""A host's /metrics (Prometheus text) after real invocations: its workers' invocation figures,
usage, instances and link calls, its providers' calls, and its own (heartbeats, capacity, fetches)."""

from __future__ import annotations

import pytest

from tests.components.build import build_wat
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.store import LatticeStore

from ..harness import eventually
from ..providers_host.test_capability_calls import KV, kvclient  # noqa: F401  (fixture)
from .helpers import scrape, value


async def test_scrape_after_real_invocations(nats_server, lattice, hosts, kvclient):  # noqa: F811 (pytest fixtures imported by name)
    h = await hosts.start(workers=2, metrics_port=0)
    assert h.metrics_address is not None
    url = "http://{}:{}/metrics".format(*h.metrics_address)
    adder = build_wat("adder")
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(adder), "adder", host_id=h.id, max_instances=4,
                                annotations={"trellis.app": "calc"})
        await c.start_provider(KV, "kvmem", host_id=h.id)
        await c.start_component(str(kvclient), "kvclient", host_id=h.id, max_instances=2,
                                annotations={"trellis.app": "store"})
        await LatticeStore(c.connection, c.lattice).put_link(Link(
            source_id="kvclient", target="kvmem", wit_namespace="test", wit_package="kv", interfaces=["store"]))
        for i in range(10):
            assert await c.call("adder", "add", i, 1) == i + 1
        with pytest.raises(RpcError):
            await c.call("adder", "add", "x", 1)
        await c.call("kvmem", "test:kv/store.bucket.set", "b", "k", "v")
        for _ in range(3):
            assert await c.call("kvclient", "lookup", "b", "k") == {"ok": "v"}
    m = await scrape(url)
    calc = {"app": "calc", "component": "adder", "host": h.id}
    assert value(m, "trellis_invocations_total", **calc, function="add", outcome="ok") == 10
    assert value(m, "trellis_invocations_total", **calc, outcome="error") == 1
    assert value(m, "trellis_invocation_errors_total", **calc, kind="bad_argument") == 1
    assert value(m, "trellis_invocation_duration_seconds_count", **calc, function="add") == 11
    assert value(m, "trellis_invocation_duration_seconds_bucket", **calc, function="add", le="+Inf") == 11
    assert value(m, "trellis_usage_cpu_seconds_total", **calc) > 0
    assert value(m, "trellis_usage_energy_joules_total", **calc) > 0
    assert value(m, "trellis_usage_carbon_grams_total", **calc) > 0
    assert value(m, "trellis_instances_cold_starts_total", **calc) == 10
    assert value(m, "trellis_instances_started_total", **calc) == 10
    assert value(m, "trellis_instances_live", **calc) == 0  # a fresh instance per call, dropped after it
    store = {"app": "store", "component": "kvclient", "host": h.id}
    assert value(m, "trellis_invocations_total", **store, outcome="ok") == 3
    # lookup opens the bucket and gets the key: two link calls each, over the provider's socket
    assert value(m, "trellis_link_calls_total", **store) == 6
    # the provider's own figures, gathered from it over NATS: 6 from kvclient, 1 from the client
    assert value(m, "trellis_provider_calls_total", provider="kvmem", outcome="ok") == 7
    assert value(m, "trellis_provider_caller_calls_total", provider="kvmem", caller="kvclient") == 6
    assert value(m, "trellis_provider_call_duration_seconds_count", provider="kvmem") == 7
    assert value(m, "trellis_provider_cpu_seconds_total", provider="kvmem") > 0
    # the host's own
    assert value(m, "trellis_artifact_fetches_total", source="file", outcome="ok") == 2
    assert value(m, "trellis_host_capacity", resource="cpus") >= 1
    assert value(m, "trellis_compile_cache_compiles_total") + value(m, "trellis_compile_cache_hits_total") >= 2
    await eventually(lambda: h.metrics.heartbeats is not None)
    assert "trellis_host_heartbeats_total" in (await scrape(url))
