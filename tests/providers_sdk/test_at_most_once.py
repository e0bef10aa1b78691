"""At most once per call id: a provider whose event loop stalls (a loaded host) past its callers'
silence window is presumed dead and the call is sent again, with the same id, to the same instance.
The copy must not run the call a second time (an SQL insert failing on a duplicate key, as the orders
app's did under load): it joins the call still running, or gets the finished call's reply."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from trellis.interfaces.envelope import Invocation
from trellis.interfaces.rpc_client import RpcClient
from trellis.providers.sdk import Bootstrap, Provider, ProviderRuntime
from trellis.samehost import handoff
from trellis.samehost.local_rpc import REMOTE, LocalRpcClient

API = "example:orders/store"
HOST = "H" * 56
SILENCE_S = 0.3


class Orders:
    """A provider that inserts an order (primary key: its id) and then stalls its own event loop,
    as a host loop busy with other work does, so no progress frame leaves while it holds."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("create table orders (id text primary key)")
        self.runs: list[str] = []
        self.runtime: ProviderRuntime | None = None

    def provider(self) -> Provider:
        p = Provider("orders-store")

        @p.export(API)
        async def create(order_id: str, stall_s: float, then_s: float, **kwargs: Any) -> str:
            self.runs.append(order_id)
            self.db.execute("insert into orders values (?)", (order_id,))  # a second run: IntegrityError
            time.sleep(stall_s)  # the loop is stalled: no progress frames, the caller gives up on it
            await asyncio.sleep(then_s)  # the loop runs again: the caller's copy arrives meanwhile
            return f"created {order_id}"

        return p

    def rows(self) -> int:
        return int(self.db.execute("select count(*) from orders").fetchone()[0])


@pytest.fixture
def orders(nats_server: Any, lattice: str) -> Iterator[Orders]:
    """The provider on a loop (and NATS connection) of its own, in a thread, as on another host's process."""
    o = Orders()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def run() -> None:
        boot = Bootstrap(lattice=lattice, provider_id="orders-store", host_id=HOST, nats={"url": nats_server.url},
                         shutdown_grace_s=2.0, local_workers=["orders"])
        async with ProviderRuntime(o.provider(), boot) as rt:
            o.runtime = rt
            stop.append(asyncio.Event())
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(15), "the provider did not start"
    yield o
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)
    loop.close()
    o.db.close()


async def test_a_call_retried_while_its_provider_stalls_runs_once(orders: Orders, nats_server: Any,
                                                                  lattice: str) -> None:
    nc = await nats.connect(nats_server.url)
    client = RpcClient(nc, lattice, source="orders", silence_s=SILENCE_S)
    try:
        # the copy reaches the provider after the first ended: it gets the first's reply
        assert await client.call("orders-store", f"{API}.create", ["o-1", 1.0, 0.0], timeout_s=10) == "created o-1"
        # the copy reaches it while the first still runs: it joins it
        assert await client.call("orders-store", f"{API}.create", ["o-2", 0.7, 0.5], timeout_s=10) == "created o-2"
        assert client.stats["lost"] >= 2  # both were sent again: the provider looked dead
        assert orders.runs == ["o-1", "o-2"] and orders.rows() == 2  # each ran once
        assert orders.runtime is not None and orders.runtime.server is not None
        memory = orders.runtime.server.memory
        assert memory is not None and memory.stats["replayed"] >= 1 and memory.stats["joined"] >= 1
        assert memory.running == 0
    finally:
        await client.close()
        await nc.close()


@pytest.mark.skipif(not handoff.available(), reason="needs Linux abstract Unix sockets")
async def test_a_wasm_threads_call_over_the_local_socket_retried_over_nats_runs_once(
        orders: Orders, nats_server: Any, lattice: str) -> None:
    """The orders app's way: a Wasm thread calls its host's provider over the local socket; lost
    there, the call goes over NATS (``host/workers/imports.py``), to the same instance."""
    nc = await nats.connect(nats_server.url)
    client = RpcClient(nc, lattice, source="orders", silence_s=SILENCE_S)
    local = LocalRpcClient(lattice, HOST, silence_s=SILENCE_S)
    loop = asyncio.get_running_loop()

    def wasm_thread_call(order_id: str) -> Any:
        inv = Invocation(target="orders-store", interface="example:orders/store", function="create",
                         args=[order_id, 0.8, 0.0], source="orders", deadline_ms=int((time.time() + 10) * 1000))
        try:
            result = local.call(inv, inv.encode())
        finally:
            local.close_thread()
        if result is REMOTE:
            result = asyncio.run_coroutine_threadsafe(client.invoke(inv), loop).result(10)
        return result

    try:
        assert await asyncio.to_thread(wasm_thread_call, "o-3") == "created o-3"
        assert local.stats["lost"] == 1  # given up on the socket, sent over NATS
        assert orders.runs == ["o-3"] and orders.rows() == 1
    finally:
        await client.close()
        await nc.close()
