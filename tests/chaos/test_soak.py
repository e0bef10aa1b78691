"""Scenario 8: a slow soak. Minutes of load while the hosts restart in turn.

An application (a component with 6 instances, a provider on 2 hosts) runs under 20
calls in flight. One host after another is restarted, alternately SIGKILLed and
stopped gracefully, each coming back with the same identity; after each restart the
test waits until the app is whole again and more calls have succeeded. Memory (RSS)
of every process is sampled after warm-up and at the end: the long-lived ones (NATS
nodes, controllers, this test's client) must not grow without bound, and no process
may be left behind (a provider or worker of a killed host).

``TRELLIS_SOAK_S`` sets the length (default 90 s; docs/reliability.md records longer runs).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster, rss_bytes
from trellis.interfaces.wadm_client import WadmClient

from .apps import placements, stream_consumers, until
from .figures import record
from .load import Load

SOAK_S = float(os.environ.get("TRELLIS_SOAK_S", "90"))
KV = str(Path(__file__).resolve().parents[1] / "providers_host" / "kv_provider.py")

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(SOAK_S + 300)]


def soak_app(image: Path) -> str:
    return f"""\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: soak
  annotations:
    version: v1
spec:
  components:
    - name: svc
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 6
    - name: kv
      type: capability
      properties:
        image: {KV}
      traits:
        - type: spreadscaler
          properties:
            instances: 2
"""


def _mb(values: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 2**20, 1) for k, v in sorted(values.items())}


def test_soak_hosts_restart_in_turn(cluster: Cluster, wasm):
    cluster.start_hosts()
    cluster.start_controllers(2)
    me = psutil.Process()

    def long_lived() -> dict[str, int]:
        found = {k: v for k, v in cluster.processes().items() if k.startswith(("nats-", "wadm-"))}
        return {**rss_bytes(found), "test-client": me.memory_info().rss}

    def strays() -> dict[str, dict[str, int]]:
        """Per machine: provider and worker processes beyond what its one host should have."""
        out: dict[str, dict[str, int]] = {}
        for m in cluster.machines:
            cmds = []
            for pid in cluster.pids_in(m):
                try:
                    proc = psutil.Process(pid)
                    cmd = " ".join(proc.cmdline())
                    if "workers.zygote" in cmd and "workers.zygote" not in " ".join(proc.parent().cmdline()):
                        continue  # the workers' zygote (their parent, with the command line its forks have)
                    cmds.append(cmd)
                except (psutil.Error, AttributeError):
                    continue
            providers = sum(KV in c for c in cmds)
            workers = sum("trellis.host.workers" in c for c in cmds)
            if providers > 1 or workers > 1:
                out[m.name] = {"providers": providers, "workers": workers}
        return out

    async def whole(c, w: WadmClient) -> bool:
        hosts = await c.get_hosts(timeout_s=0.5)
        comps = sum(x.max_instances for h in hosts for x in h.components if x.id == "soak-svc")
        provs = sum(1 for h in hosts for p in h.providers if p.id == "soak-kv" and p.status == "running")
        return comps == 6 and provs == 2 and len(hosts) == 3

    async def scenario() -> dict:
        async with cluster.client() as c:
            w = WadmClient(c, wait_leader_s=20)
            await w.put(soak_app(wasm["hostile"]))
            await w.deploy("soak")
            await until(lambda: whole(c, w), 90, "the app whole")
            restarts: list[dict] = []
            async with Load(c, "soak-svc", "ok", expect=42, concurrency=20, max_calls=10_000_000,
                            max_s=SOAK_S + 200, keep_all=False) as load:
                await load.wait_ok(1000)
                mem_start = long_lived()
                consumers_start = await stream_consumers(c, cluster.lattice)
                hosts_start = _mb(rss_bytes({k: v for k, v in cluster.processes().items() if k.startswith("host-")}))
                end = time.monotonic() + SOAK_S
                turn = 0
                while time.monotonic() < end:
                    m = cluster.machines[turn % len(cluster.machines)]
                    how = "kill" if turn % 2 == 0 else "stop"
                    t0 = time.monotonic()
                    if how == "kill":
                        cluster.kill_host(m)
                    else:
                        await asyncio.to_thread(cluster.hosts[m.name].stop, 15.0)
                    await asyncio.to_thread(cluster.start_host, m)
                    _, back_s = await until(lambda: whole(c, w), 60, f"the app whole after {how} of {m.name}")
                    restarts.append({"host": m.name, "how": how, "whole_after_s": round(time.monotonic() - t0, 2)})
                    await load.wait_ok(1500, timeout=60)
                    turn += 1
                mem_end = long_lived()
                consumers_end = await stream_consumers(c, cluster.lattice)
                hosts_end = _mb(rss_bytes({k: v for k, v in cluster.processes().items() if k.startswith("host-")}))
            status = (await w.status("soak")).status
            return {"load": load.summary(), "restarts": restarts, "mem_start": mem_start, "mem_end": mem_end,
                    "hosts_start": hosts_start, "hosts_end": hosts_end, "status": status,
                    "strays": strays(), "placed": await placements(c, "soak-svc"),
                    "consumers": {"start": consumers_start, "end": consumers_end}}

    result = cluster.run(scenario(), timeout=SOAK_S + 240)
    growth = {k: round((result["mem_end"].get(k, 0) - v) / 2**20, 1) for k, v in result["mem_start"].items()}
    record("soak", soak_s=SOAK_S, calls=result["load"]["calls"], failed_calls=result["load"]["failed"],
           errors=result["load"]["errors"], p50_ms=result["load"]["p50_ms"], p99_ms=result["load"]["p99_ms"],
           restarts=result["restarts"], rss_mb_start=_mb(result["mem_start"]), rss_mb_end=_mb(result["mem_end"]),
           growth_mb=growth, hosts_rss_mb_start=result["hosts_start"], hosts_rss_mb_end=result["hosts_end"],
           strays=result["strays"], jetstream_consumers=result["consumers"])
    assert result["status"] == "deployed" and sum(result["placed"].values()) == 6, result
    assert not result["strays"], f"processes left behind by restarted hosts: {result['strays']}"
    assert result["load"]["failed"] == 0, result["load"]
    for name, start in result["mem_start"].items():
        end = result["mem_end"][name]
        assert end <= start * 1.5 + 32 * 2**20, f"{name} grew from {start / 2**20:.0f} MB to {end / 2**20:.0f} MB"
