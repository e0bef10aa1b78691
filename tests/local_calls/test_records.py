"""Every invocation a worker finishes gives one record (host/workers/records.py), whichever way it
came in: over NATS, inline on the loop, co-located from another component. The worker's usage tally
(host/workers/usage.py) adds them up per component."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError

from .test_colocated import RUN, chain


async def usage(host: Any) -> dict[str, dict[str, Any]]:
    """Usage per component, summed over the host's workers (counts only)."""
    total: dict[str, dict[str, Any]] = {}
    for per_worker in await host.components.pool.usage():
        for cid, u in per_worker.items():
            into = total.setdefault(cid, {"via": {}})
            for key, value in u.items():
                if key == "via":
                    for k, v in value.items():
                        into["via"][k] = into["via"].get(k, 0) + v
                elif isinstance(value, (int, float)):
                    into[key] = into.get(key, 0) + value
                else:
                    into[key] = value
    return total


async def test_every_way_in_gives_one_record(nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("TRELLIS_LOCAL_CALLS", "1")
    monkeypatch.setenv("TRELLIS_INLINE_CALLS", "1")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await chain(c, wasm, max_instances=2, annotations={"trellis.app": "shop"})
        await c.start_component(str(wasm["adder"]), "adder")
        for s in ("a", "b", "c"):
            assert await c.call("first", RUN, s) == s
        for i in range(5):
            assert await c.call("adder", "add", i, i) == 2 * i
        with pytest.raises(RpcError):
            await c.call("adder", "add", "not a number", 1)
        u = await usage(h)
    first, second, third, adder = u["first"], u["second"], u["third"], u["adder"]
    assert first["invocations"] == 3 and first["via"] == {"rpc": 3} and first["inline"] == 0
    assert second["invocations"] == 3 and second["via"] == {"colocated": 3}
    assert third["invocations"] == 3 and third["via"] == {"colocated": 3}
    assert first["app"] == second["app"] == third["app"] == "shop"
    assert adder["app"] == ""
    assert adder["invocations"] == 6 and adder["errors"] == 1 and adder["inline"] == 6
    for name, one in u.items():
        assert one["cold_starts"] == one["invocations"] - one["errors"], (name, one)
        assert one["cpu_s"] > 0 and one["wall_s"] >= one["cpu_s"] * 0.5, (name, one)
        assert one["memory_byte_s"] >= 0 and one["fuel"] == 0
