"""A component start that outlasts wadm's start timeout while its host is still working on it
(a large component compiling on a busy machine) is waited for, not failed and retried."""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.msg import Msg

from trellis.interfaces import subjects
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.policy import PolicySettings

from ..harness import eventually
from .helpers import component_app, wait_status


async def test_a_start_still_under_way_on_its_host_is_waited_for_past_the_timeout(
        nats_server, lattice, hosts, controllers, wadm_client, wasm, caplog):
    caplog.set_level(logging.INFO, logger="trellis.wadm.controller.executor")
    gate = asyncio.Event()  # the host's start waits on the policy service's answer until the test opens it
    asked: list[str] = []
    async with LatticeClient(nats_server.url, lattice) as c:
        assert c.nc is not None

        async def policy(msg: Msg) -> None:
            req = json.loads(msg.data)
            asked.append(req["kind"])
            if req["kind"] == "startComponent":
                await gate.wait()
            await msg.respond(json.dumps({"requestId": req["requestId"], "permitted": True,
                                          "message": "ok"}).encode())

        await c.nc.subscribe(f"policy-{lattice}", cb=policy)
        statuses: list[str] = []
        pending: list[dict[str, str]] = []

        async def status(msg: Msg) -> None:
            statuses.append(str(Event.decode(msg.data).data.get("status")))

        async def beat(msg: Msg) -> None:
            pending.append(Event.decode(msg.data).data.get("pending") or {})

        await c.nc.subscribe(subjects.event(lattice, EventType.APP_STATUS_CHANGED), cb=status)
        await c.nc.subscribe(subjects.event(lattice, EventType.HOST_HEARTBEAT), cb=beat)
        await hosts.start(heartbeat_interval_s=0.2, policy=PolicySettings(subject=f"policy-{lattice}", timeout_s=60))
        await controllers.start(start_timeout_s=0.3)

        await wadm_client.put(component_app("slow", str(wasm["adder"]), instances=1))
        await wadm_client.deploy("slow")
        # the host says what it is doing; wadm's timeout passes and it keeps waiting, saying so
        await eventually(lambda: any(p.get("slow-adder", "").startswith("start: checking") for p in pending), 30,
                         what="a heartbeat naming the start under way")
        await eventually(lambda: "still at 'start: checking signature and policy'" in caplog.text, 30,
                         what="wadm waiting on past its start timeout")
        gate.set()
        st = await wait_status(wadm_client, "slow", "deployed")
        assert st.components[0].running == 1
        assert "failed" not in statuses, statuses  # never failed (and so never retried) on the way
        assert asked.count("startComponent") == 1, asked
        await eventually(lambda: pending and not pending[-1], 10, what="no work left under way")
