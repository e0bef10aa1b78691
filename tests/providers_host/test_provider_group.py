"""A host's built-in providers share one process (host/provider_group.py), each supervised as before."""

from __future__ import annotations

import os
import signal

import psutil

from trellis.host.provider_group import GROUP_MODULE
from trellis.interfaces.client import LatticeClient

from ..harness import eventually


async def test_builtin_providers_share_one_process_and_are_supervised_in_it(nats_server, lattice, hosts):
    h = await hosts.start()
    h.providers.health_interval_s = 0.2
    running = h.providers.running

    async def healthy(*ids: str) -> bool:
        for i in ids:  # running, and answering its health check over NATS from inside the group
            if i not in running or running[i].status != "running" or not (await h.providers._check(running[i]))[0]:
                return False
        return True

    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider("builtin:keyvalue-nats", "kv", host_id=h.id)
        await c.start_provider("builtin:messaging-nats", "msg", host_id=h.id)
        await eventually(lambda: healthy("kv", "msg"), 30, what="both providers healthy")
        group = running["kv"].proc
        assert group is not None and running["msg"].proc is not None
        assert running["msg"].proc.pid == group.pid  # one process for both
        assert GROUP_MODULE in psutil.Process(group.pid).cmdline()
        assert h.providers.sharing(group.pid) == 2

        await c.stop_provider("msg", host_id=h.id)  # one stops; the other serves on in the same process
        await eventually(lambda: "msg" not in running, 15, what="msg stopped")
        assert await healthy("kv") and running["kv"].proc.pid == group.pid and psutil.pid_exists(group.pid)

        os.kill(group.pid, signal.SIGKILL)  # the group dies: its provider is restarted, in a new group
        await eventually(lambda: running["kv"].restarts == 1 and healthy("kv"), 30, what="kv restarted")
        again = running["kv"].proc
        assert again is not None and again.pid != group.pid
        assert GROUP_MODULE in psutil.Process(again.pid).cmdline()

        await c.stop_provider("kv", host_id=h.id)  # the last one stops: so does the process
        await eventually(lambda: not psutil.pid_exists(again.pid) or psutil.Process(again.pid).status() == "zombie",
                         15, what="the group process to end")
        assert (await c.get_inventory(h.id)).providers == []
