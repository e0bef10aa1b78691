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


async def test_builtin_providers_run_in_the_hosts_process_and_are_supervised_there(nats_server, lattice, hosts):
    """What `trellis host` does (TRELLIS_PROVIDERS_IN_HOST, on by default): the group on the host's own loop."""
    from trellis.providers.builtin.group import in_host

    h = await hosts.start(providers_here=in_host)
    h.providers.health_interval_s = 0.2
    running = h.providers.running
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    async def healthy(*ids: str) -> bool:
        for i in ids:
            if i not in running or running[i].status != "running" or not (await h.providers._check(running[i]))[0]:
                return False
        return True

    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider("builtin:keyvalue-nats", "kv", host_id=h.id)
        await c.start_provider("builtin:messaging-nats", "msg", host_id=h.id)
        await eventually(lambda: healthy("kv", "msg"), 30, what="both providers healthy")
        for i in ("kv", "msg"):
            member = running[i].proc
            assert member is not None and member.pid == os.getpid()
        assert h.providers.sharing(os.getpid()) == 0  # their figures are the host's own
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        assert not [p for p in started if GROUP_MODULE in " ".join(p.cmdline())]  # no group process
        usage = next(u for u in await c.get_usage() if u.get("host_id") == h.id)
        assert usage["providers"]["kv"]["memory_bytes"] == 0  # not the host's whole memory, split

        await c.stop_provider("msg", host_id=h.id)  # one stops; the other serves on
        await eventually(lambda: "msg" not in running, 15, what="msg stopped")
        assert await healthy("kv")

        group = h.providers.group
        assert group is not None and group.proc is not None
        group.send(group.proc, {"op": "kill", "id": "kv"})  # it dies as a crash would end it: restarted
        await eventually(lambda: running["kv"].restarts == 1 and healthy("kv"), 30, what="kv restarted")
        assert running["kv"].proc is not None and running["kv"].proc.pid == os.getpid()

        await c.stop_provider("kv", host_id=h.id)
        await eventually(lambda: "kv" not in running, 15, what="kv stopped")
        assert (await c.get_inventory(h.id)).providers == []
