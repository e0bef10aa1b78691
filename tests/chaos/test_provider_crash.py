"""Scenario 5: a provider process is SIGKILLed again and again under load.

A component on m0 reads through a link from the ``kvmem`` provider, which runs on m1
and m2. The instance on m1 is killed four times: its host restarts it with growing
backoff, the link stays, and the component's calls fail over to the instance on m2
meanwhile (none fails).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster
from tests.components.build import build_python
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.store import LatticeStore
from trellis.kit.procs import pid_alive

from ..harness import HostProcess
from .apps import until
from .figures import record
from .load import Load

pytestmark = pytest.mark.timeout(240)

KV = str(Path(__file__).resolve().parents[1] / "providers_host" / "kv_provider.py")
KILLS = 4


def _provider_pid(cluster: Cluster, machine) -> int | None:
    for pid in cluster.pids_in(machine):
        try:
            if KV in psutil.Process(pid).cmdline():
                return pid
        except psutil.Error:
            continue
    return None


@pytest.mark.netns
def test_provider_killed_repeatedly(cluster: Cluster):
    kvclient = build_python("kvclient")
    m0, m1, m2 = cluster.machines
    hosts = dict(zip(("m0", "m1", "m2"), cluster.start_hosts(), strict=True))

    async def scenario() -> dict:
        async with cluster.client(via=m0) as c:
            await c.start_component(str(kvclient), "kvclient", host_id=hosts["m0"].id, max_instances=8)
            for m in ("m1", "m2"):
                await c.start_provider(KV, "kvmem", host_id=hosts[m].id)
            link = Link(source_id="kvclient", target="kvmem", wit_namespace="test", wit_package="kv",
                        interfaces=["store"])
            store = LatticeStore(c.connection, cluster.lattice)
            await store.put_link(link)
            assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}

            restarts: list[float] = []
            async with Load(c, "kvclient", "lookup", ["b", "k"], expect={"ok": None}, concurrency=20,
                            max_s=120) as load:
                await load.wait_ok(100)
                for _ in range(KILLS):
                    pid = _provider_pid(cluster, m1)
                    assert pid is not None, "no kvmem process on m1"
                    os.kill(pid, signal.SIGKILL)
                    killed = time.monotonic()
                    await until(lambda: _provider_pid(cluster, m1) not in (None, pid),  # noqa: B023 (awaited here)
                                60, "kvmem restarted", interval=0.02)
                    restarts.append(round(time.monotonic() - killed, 2))

                    async def running_again() -> bool:
                        inv = await c.get_inventory(hosts["m1"].id)
                        return [p.status for p in inv.providers] == ["running"]

                    await until(running_again, 30, "kvmem healthy on m1")
                    await load.wait_ok(100)
            inv = await c.get_inventory(hosts["m1"].id)
            return {"load": load.summary(), "rpc": dict(c.rpc.stats), "restart_after_s": restarts,
                    "links": await store.list_links() == [link],
                    "providers_m1": [p.model_dump() for p in inv.providers]}

    result = cluster.run(scenario(), timeout=200)
    record("provider-kill-repeatedly", failed_calls=result["load"]["failed"], calls=result["load"]["calls"],
           restart_after_s=result["restart_after_s"], link_intact=result["links"],
           worst_latency_ms=result["load"]["max_ms"], p50_ms=result["load"]["p50_ms"])
    delays = result["restart_after_s"]
    assert all(b > a for a, b in zip(delays, delays[1:], strict=False)), f"restarts without growing backoff: {delays}"
    assert result["links"], "the link changed"
    assert result["load"]["failed"] == 0, result


ECHO = str(Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py")


async def test_provider_dies_with_its_host(nats_server, lattice, tmp_path):
    """SIGKILL the host process alone: its provider must not live on as an orphan still serving calls."""
    host = HostProcess(nats_server.url, lattice, "--workers", "1", "--state-dir", str(tmp_path / "h"),
                       log=tmp_path / "host.log")
    pid = 0
    try:
        await asyncio.to_thread(host.wait_started)
        async with LatticeClient(nats_server.url, lattice) as c:
            await c.start_provider(ECHO, "echo", host_id=host.id)
            pid = await c.call("echo", "test:echo/echo.pid")
            os.kill(host.proc.pid, signal.SIGKILL)  # the host only: not its process group
            await asyncio.to_thread(host.proc.wait, 10)
            _, gone_s = await until(lambda: not pid_alive(pid), 15, "the provider gone with its host")
            with pytest.raises(RpcError):
                await c.call("echo", "test:echo/echo.pid", timeout_s=1)
        record("provider-dies-with-host", provider_gone_after_s=round(gone_s, 2))
    finally:
        host.kill()
        if pid and pid_alive(pid):  # the orphan this test is about: do not leave it behind
            os.kill(pid, signal.SIGKILL)
