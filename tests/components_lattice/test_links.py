"""Component-to-component calls through links, across hosts: A → B → C."""

from __future__ import annotations

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.store import LatticeStore

from ..harness import eventually


async def test_chain_across_three_hosts_and_missing_link(nats_server, lattice, hosts, wasm):
    for role in ("a", "b", "c"):
        await hosts.start(labels={"role": role})
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        await c.start_component(str(wasm["chain"]), "first", constraints={"role": "a"})
        await c.start_component(str(wasm["middle"]), "second", constraints={"role": "b"})
        await c.start_component(str(wasm["tail"]), "third", constraints={"role": "c"})

        # deny by default: no link, the import fails that call and names what is missing
        with pytest.raises(RpcError) as err:
            await c.call("first", "test:chain/runner.run", "hello")
        assert err.value.kind == "missing_link"
        assert "test:chain/next" in err.value.message and "trellis link put first" in err.value.message

        await store.put_link(Link(source_id="first", target="second", wit_namespace="test",
                                  wit_package="chain", interfaces=["next"]))
        await store.put_link(Link(source_id="second", target="third", wit_namespace="test",
                                  wit_package="chain", interfaces=["runner"]))
        assert await c.call("first", "test:chain/runner.run", "hello") == "hello"
        long = "x" * 100_000
        assert await c.call("first", "test:chain/runner.run", long) == long

        # the middle hop loses its link: the error travels back up with the cause
        await store.delete_link("second", "test", "chain")

        async def fails() -> RpcError | None:  # link changes reach every worker within moments
            try:
                await c.call("first", "test:chain/runner.run", "again")
            except RpcError as exc:
                return exc
            return None

        err = await eventually(fails, 5, what="the deleted link to take effect")
        assert "second" in err.message and "test:chain/runner" in err.message
        assert err.code != ErrorCode.TIMEOUT


async def test_nested_calls_on_one_worker_do_not_starve(nats_server, lattice, hosts, wasm):
    """20 calls in flight through A → B → C, all on one worker: waiting callers never take the
    threads their callees need (a fixed pool of 8 threads used to time out here)."""
    import asyncio

    await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        for image, cid in (("chain", "first"), ("middle", "second"), ("tail", "third")):
            await c.start_component(str(wasm[image]), cid, max_instances=20)
        await store.put_link(Link(source_id="first", target="second", wit_namespace="test",
                                  wit_package="chain", interfaces=["next"]))
        await store.put_link(Link(source_id="second", target="third", wit_namespace="test",
                                  wit_package="chain", interfaces=["runner"]))
        assert await c.call("first", "test:chain/runner.run", "warm") == "warm"
        results = await asyncio.gather(*(c.call("first", "test:chain/runner.run", f"m{i}", timeout_s=10)
                                         for i in range(60)))
        assert results == [f"m{i}" for i in range(60)]
