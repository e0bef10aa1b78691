"""A provider's calls to a component over a worker's door (trellis/samehost/local_rpc.py), with a real
RpcServer behind it: answers, errors, and a server that stops while calls share the connection."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from trellis.interfaces.envelope import Invocation
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.rpc_server import RpcServer
from trellis.samehost import handoff
from trellis.samehost.local_rpc import REMOTE, LocalComponentCaller, LocalRpcDoor, component_address

pytestmark = pytest.mark.skipif(not handoff.available(), reason="needs Linux abstract Unix sockets")

HOST = "H" * 56


def inv(function: str, *args: object, timeout_s: float = 5.0) -> Invocation:
    return Invocation("svc", "x:y/z", function, list(args), "prov", f"id-{function}-{time.monotonic_ns()}",
                      int((time.time() + timeout_s) * 1000))


async def test_calls_share_the_door_and_a_stopping_server_answers_busy(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def handle(call: Invocation) -> object:
        if call.function == "slow":
            entered.set()
            await release.wait()
            return "slow done"
        if call.function == "fail":
            raise RpcError("no such thing", ErrorCode.NOT_FOUND)
        return call.args

    server = RpcServer(nc, lattice, "svc", handle, served_by="w0")
    await server.start()
    door = LocalRpcDoor(server, component_address(lattice, HOST, 0, "svc"))
    assert await door.start()
    caller = LocalComponentCaller(lattice, HOST, workers=2)  # worker 1 has no door: skipped
    try:
        assert await caller.call(inv("echo", 1, "a")) == [1, "a"]
        with pytest.raises(RpcError) as err:
            await caller.call(inv("fail"))
        assert err.value.code == ErrorCode.NOT_FOUND
        assert await asyncio.gather(*(caller.call(inv("echo", i)) for i in range(10))) == [[i] for i in range(10)]

        slow = asyncio.create_task(caller.call(inv("slow")))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(server.stop(drain_timeout_s=5))
        # the server drains: a new call on the same connection is answered busy (to NATS) ...
        assert await caller.call(inv("echo", "late")) is REMOTE
        release.set()
        # ... and the call it was finishing still gets its answer on that connection
        assert await slow == "slow done"
        await stopping
        assert door.taken == 13 and caller.stats["remote"] == 1 and caller.stats["lost"] == 0
    finally:
        release.set()
        caller.close()
        await door.close(asyncio.sleep(0))
        await nc.close()


async def test_no_door_means_nats(lattice):
    caller = LocalComponentCaller(lattice, HOST, workers=3)
    assert await caller.call(inv("echo")) is REMOTE
    assert caller.stats["calls"] == 0
