"""A worker whose Wasm calls keep the GIL (TRELLIS_WASM_HOLD_GIL=1, host/runtime/gil_hold.py): a
guest spinning without imports on a Wasm thread is still stopped at its deadline, the inline
budget still moves it off the loop, and meanwhile the worker's event loop answers other calls."""

from __future__ import annotations

import asyncio

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError

from .test_colocated import RUN, stats

ADD = "add"


async def test_a_spinning_guest_holding_the_gil_leaves_the_workers_loop_serving(
        nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("TRELLIS_WASM_HOLD_GIL", "1")
    h = await hosts.start(workers=1)
    assert h.settings.tuning.wasm.wasm_hold_gil is True
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["spintail"]), "spin", limits={"timeout_s": 3})
        await c.start_component(str(wasm["adder"]), "adder")
        assert await c.call("adder", ADD, 0, 1, timeout_s=5) == 1
        spinning = asyncio.create_task(c.call("spin", RUN, "s", timeout_s=10))
        # cut short inline at the budget, it spins on a Wasm thread for 3 s, the GIL held between
        # epoch ticks: the worker's loop answers in the meantime
        for i in range(20):
            assert await c.call("adder", ADD, i, 1, timeout_s=2) == i + 1
        assert not spinning.done()
        with pytest.raises(RpcError) as err:
            await spinning
        assert err.value.kind == "timeout" and "deadline of 3" in err.value.message, err.value.message
        spin = await stats(h, "spin")
        assert spin["inline"] == {"served": 0, "rerouted": 1}
        assert await c.call("adder", ADD, 2, 2, timeout_s=5) == 4
