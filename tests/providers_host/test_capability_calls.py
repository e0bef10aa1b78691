"""A Python component calls a provider through a link: resources, results, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.build import build_python
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.store import LatticeStore

KV = str(Path(__file__).with_name("kv_provider.py"))


@pytest.fixture(scope="session")
def kvclient() -> Path:
    return build_python("kvclient")


async def test_component_uses_bucket_resource_of_linked_provider(nats_server, lattice, hosts, kvclient):
    a = await hosts.start(labels={"side": "component"})
    b = await hosts.start(labels={"side": "provider"})
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider(KV, "kvmem", host_id=b.id)
        await c.start_component(str(kvclient), "kvclient", host_id=a.id)
        with pytest.raises(RpcError) as err:
            await c.call("kvclient", "lookup", "b", "k")
        assert err.value.kind == "missing_link"
        assert "trellis link put kvclient TARGET test kv --interface store" in err.value.message


async def test_linked_calls_with_resources_and_typed_errors(nats_server, lattice, hosts, kvclient):
    a = await hosts.start(labels={"side": "component"})
    b = await hosts.start(labels={"side": "provider"})
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider(KV, "kvmem", host_id=b.id)
        await c.start_component(str(kvclient), "kvclient", host_id=a.id)
        await LatticeStore(c.connection, lattice).put_link(Link(
            source_id="kvclient", target="kvmem", wit_namespace="test", wit_package="kv", interfaces=["store"]))
        assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}
        assert await c.call("kvclient", "copy", "b", "k", "k2") == {"err": "no key 'k'"}
        # set through the provider directly, then copy through the component (open → get → set → drop)
        await c.call("kvmem", "test:kv/store.bucket.set", "b", "k", "v")
        assert await c.call("kvclient", "copy", "b", "k", "k2") == {"ok": "v"}
        assert await c.call("kvclient", "lookup", "b", "k2") == {"ok": "v"}
        denied = await c.call("kvclient", "lookup", "forbidden", "k")
        assert denied == {"err": "AccessDenied"}, denied
