"""Python components use builtin:keyvalue-nats and builtin:keyvalue-redis on a lattice.

Two hosts each run the provider and the component, so calls, bucket handles
and increments spread over two provider processes: handles must mean the same
to both, and compare-and-set must hold across them. keyvalue-nats runs with no
config at all: it uses the lattice's own NATS server.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError
from trellis.natsserver import NatsServer

from .backends import RedisServer
from .harness_lattice import deploy
from .helpers import kv_link


@pytest.fixture(params=["nats", "redis"])
def kv_backend(request: pytest.FixtureRequest, redis_server: RedisServer) -> tuple[str, dict[str, str]]:
    """(provider image, link config)."""
    if request.param == "nats":
        return "builtin:keyvalue-nats", {}
    return "builtin:keyvalue-redis", {"url": redis_server.url, "key_prefix": f"t{uuid.uuid4().hex[:8]}:"}


async def test_component_uses_buckets_across_two_provider_instances(
        nats_server: NatsServer, lattice: str, hosts, kvstore: Path, kv_backend: tuple[str, dict[str, str]]) -> None:
    image, config = kv_backend
    a, b = await hosts.start(), await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [a.id, b.id], providers={"kv": image}, components={"notes": kvstore})
        bkt = "b" + uuid.uuid4().hex[:8]
        with pytest.raises(RpcError) as unlinked:
            await c.call("notes", "put", bkt, "k", b"v")
        assert unlinked.value.kind == "missing_link"
        await c.put_config("notes-kv", {**config, "list_page_size": "3"})
        await c.put_link(kv_link("notes", "kv", config="notes-kv"))
        writes = await asyncio.gather(*(c.call("notes", "put", bkt, f"k{i}", str(i).encode()) for i in range(10)))
        assert all(w == {"ok": None} for w in writes), writes
        assert await c.call("notes", "fetch", bkt, "k7") == {"ok": b"7"}
        copies = await asyncio.gather(*(c.call("notes", "copy", bkt, f"k{i}", f"c{i}") for i in range(10)))
        assert all(r == {"ok": None} for r in copies), copies
        assert await c.call("notes", "keys", bkt) == {"ok": sorted([f"k{i}" for i in range(10)]
                                                                   + [f"c{i}" for i in range(10)])}
        assert await c.call("notes", "erase", bkt, "k7") == {"ok": None}
        assert await c.call("notes", "fetch", bkt, "k7") == {"err": "missing"}
        bad = await c.call("notes", "put", "not valid", "k", b"v")
        assert bad["err"].startswith("other: invalid bucket identifier"), bad


async def test_component_counts_in_kv_across_two_provider_instances(
        nats_server: NatsServer, lattice: str, hosts, kvtool: Path, kv_backend: tuple[str, dict[str, str]]) -> None:
    image, config = kv_backend
    a, b = await hosts.start(), await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [a.id, b.id], providers={"kv": image}, components={"counter": kvtool})
        await c.put_config("counter-kv", config or {"bucket_prefix": "app-"})
        await c.put_link(kv_link("counter", "kv", config="counter-kv"))
        bucket = "visits" + uuid.uuid4().hex[:8]
        results = await asyncio.gather(*(c.call("counter", "bump", bucket, "home", 1) for _ in range(24)))
        assert sorted(r["ok"] for r in results) == list(range(1, 25)), results
        assert await c.call("counter", "count", bucket, "home") == {"ok": 24}
        assert await c.call("counter", "bump", bucket, "home", 6) == {"ok": 30}
        assert await c.call("counter", "count", bucket, "never") == {"ok": None}


async def test_every_kv_function_through_a_component(
        nats_server: NatsServer, lattice: str, hosts, kvtool: Path, kv_backend: tuple[str, dict[str, str]]) -> None:
    image, config = kv_backend
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [h.id], providers={"kv": image}, components={"tool": kvtool})
        await c.put_config("tool-kv", {**config, "list_page_size": "2"})
        await c.put_link(kv_link("tool", "kv", config="tool-kv"))
        bkt = "b" + uuid.uuid4().hex[:8]
        assert await c.call("tool", "put", bkt, "k", b"v") == {"ok": None}
        assert await c.call("tool", "fetch", bkt, "k") == {"ok": b"v"}
        assert await c.call("tool", "has", bkt, "k") == {"ok": True}
        assert await c.call("tool", "put-many", bkt, [["a", b"1"], ["b", b"2"], ["c", b"3"]]) == {"ok": None}
        assert await c.call("tool", "fetch-many", bkt, ["a", "zz", "c"]) == {"ok": [b"1", None, b"3"]}
        keys, pages = (await c.call("tool", "keys", bkt))["ok"]
        assert keys == ["a", "b", "c", "k"]
        if image.endswith("nats"):
            assert pages == 2  # two keys a page
        assert await c.call("tool", "erase-many", bkt, ["a", "b"]) == {"ok": None}
        assert await c.call("tool", "erase", bkt, "k") == {"ok": None}
        assert await c.call("tool", "has", bkt, "k") == {"ok": False}
        assert (await c.call("tool", "keys", bkt))["ok"][0] == ["c"]
        bad = await c.call("tool", "has", "not valid", "k")
        assert bad["err"].startswith("other: invalid bucket identifier"), bad

