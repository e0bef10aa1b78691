"""Scenario 3: one NATS node of three is SIGKILLed under load.

Nothing stored is lost (manifest, link, config, artifact: every bucket has three
replicas), every host reconnects to a surviving node, and failed calls are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.cluster import Cluster
from trellis.interfaces.artifacts import fetch_lattice, push
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore
from trellis.interfaces.wadm_client import WadmClient

from .apps import spread_app, stream_replicas, until
from .figures import record
from .load import Load

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


def test_nats_node_killed_under_load(cluster: Cluster, wasm, monkeypatch):
    # the lattice-wide replica setting, as every process of a real cluster has it: the
    # buckets this test process makes (links, config, artifacts) get three replicas too
    monkeypatch.setenv("TRELLIS_KV_REPLICAS", "3")
    hosts = cluster.start_hosts()
    cluster.start_controllers(2)
    m0 = cluster.machines[0]
    doomed = cluster.node(m0)  # the node the client and m0's host talk through
    code = wasm["hostile"].read_bytes()

    async def scenario() -> dict:
        async with cluster.client(via=m0) as c:
            store = LatticeStore(c.connection, cluster.lattice)
            ref = await push(c.connection, cluster.lattice, code)
            for h in hosts:
                await c.start_component(ref, "svc", host_id=h.id, max_instances=20)
            link = Link(source_id="svc", target="kv", wit_namespace="wasi", wit_package="keyvalue",
                        interfaces=["store"])
            await store.put_link(link)
            await store.put_config("svc-settings", {"greeting": "hello", "n": "1"})
            wadm = WadmClient(c)
            await wadm.put(spread_app("kept", ref, 3))
            replicas = await stream_replicas(c, cluster.lattice)

            async with Load(c, "svc", "ok", expect=42, concurrency=20, max_s=90) as load:
                await load.wait_ok(300)
                killed_at = time.monotonic()
                doomed.kill()
                want = {h.id for h in hosts}

                async def all_hosts_answer() -> bool:
                    return {h.id for h in await c.get_hosts(timeout_s=0.5)} == want

                _, reconnected_s = await until(all_hosts_answer, 30, "every host answering again")
                await load.wait_ok(1000)
            after = load.summary(since=killed_at)


            # A stream whose leader was on the dead node answers again once its replicas
            # elect a new leader (NATS: 4-9 s); until then a read times out. Each stored
            # thing is polled on its own, and the time it came back is its figure.
            checks: dict[str, Callable[[], Awaitable[Any]]] = {
                "links": lambda: store.list_links(),
                "config": lambda: store.get_config("svc-settings"),
                "artifact": lambda: fetch_lattice(c.connection, cluster.lattice, ref.removeprefix("lattice://")),
                "manifest": lambda: wadm.get("kept"),
            }
            wanted = {"links": [link], "config": {"greeting": "hello", "n": "1"}, "artifact": code}

            async def readable(name: str) -> tuple[str, bool, float]:
                async def attempt() -> tuple[bool] | None:
                    try:
                        got = await checks[name]()
                    except Exception:
                        return None
                    return (got.version == "v1",) if name == "manifest" else (got == wanted[name],)

                (same,), _ = await until(attempt, 40, f"{name} readable")
                return name, same, round(time.monotonic() - killed_at, 2)

            back = await asyncio.gather(*(readable(n) for n in checks))
            kept = {name: same for name, same, _ in back}
            readable_s = {name: t for name, _, t in back}
            return {"load": load.summary(), "after": after, "rpc": dict(c.rpc.stats), "replicas": replicas,
                    "kept": kept, "reconnected_s": reconnected_s,
                    "readable_s": readable_s}

    result = cluster.run(scenario())
    record("nats-node-kill", failed_calls=result["load"]["failed"], calls=result["load"]["calls"],
           hosts_answer_again_s=round(result["reconnected_s"], 2),
           worst_latency_ms_after_kill=result["after"]["max_ms"], retries=result["rpc"]["retries"],
           stored_readable_after_s=result["readable_s"], stored_kept=result["kept"],
           replicas=result["replicas"])
    assert all(n == 3 for n in result["replicas"].values()) and len(result["replicas"]) >= 5, result["replicas"]
    assert all(result["kept"].values()), result["kept"]
    assert result["load"]["failed"] == 0, result
