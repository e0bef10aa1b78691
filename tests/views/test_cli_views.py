"""`trellis get components|providers` and `trellis events` against real hosts, components and providers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue

from tests.harness import HostProcess, eventually
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcError

from .conftest import ECHO_PROVIDER


async def test_get_components_and_providers_lattice_wide(nats_server, lattice, hosts, cli, adder):
    a = await hosts.start()
    b = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(adder), "adder", max_instances=2, host_id=a.id)
        await c.start_component(str(adder), "adder", max_instances=3, host_id=b.id)
        await c.start_provider(str(ECHO_PROVIDER), "echo", host_id=b.id)

    out = await asyncio.to_thread(cli, "get", "components", "-o", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == ["adder"]
    assert rows[0]["max_instances"] == 5 and rows[0]["image"] == str(adder)
    assert sorted((p["host_name"], p["max_instances"]) for p in rows[0]["hosts"]) == sorted(
        [(a.friendly_name, 2), (b.friendly_name, 3)])

    out = await asyncio.to_thread(cli, "get", "providers", "-o", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["id"], r["status"]) for r in rows] == [("echo", "running")]
    assert [p["host_id"] for p in rows[0]["hosts"]] == [b.id]

    table = (await asyncio.to_thread(cli, "get", "components")).stdout
    assert "adder" in table and a.friendly_name in table and b.friendly_name in table


async def test_events_follow_hosts_placements_and_a_killed_host(nats_server, lattice, hosts, follow, adder, tmp_path):
    events = follow("events", "-o", "json")
    lines = follow("events", "--type", "host_started,host_lost")
    a = await hosts.start()
    ev = await events.wait_for(lambda e: e["type"] == "host_started")
    assert ev["source"] == a.id and ev["data"]["name"] == a.friendly_name

    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(adder), "adder", max_instances=2, host_id=a.id)
        ev = await events.wait_for(lambda e: e["type"] == "component_scaled")
        assert ev["data"]["component_id"] == "adder" and ev["data"]["max_instances"] == 2
        await c.put_label(a.id, "zone", "eu-1")
        ev = await events.wait_for(lambda e: e["type"] == "labels_changed")
        assert ev["data"]["labels"]["zone"] == "eu-1"

    # a host killed without a word: the watcher reports it lost after three missed heartbeats
    proc = HostProcess(nats_server.url, lattice, "--heartbeat-interval", "0.5", log=tmp_path / "h.log")
    try:
        await asyncio.to_thread(proc.wait_started, 60)  # a host process starts slowly on a busy machine
        await events.wait_for(lambda e: e["type"] == "host_started" and e["source"] == proc.id)
        proc.kill()
        lost = await events.wait_for(lambda e: e["type"] == "host_lost", timeout=15)
        assert lost["data"]["host_id"] == proc.id and lost["data"]["name"] == proc.name
    finally:
        proc.kill()
    assert all(e["type"] != "host_heartbeat" for e in [lost])  # heartbeats only with --heartbeats

    # the table: one line per event, filtered by type
    line = await lines.wait_for(lambda s: "host_started" in s and a.friendly_name in s, json_lines=False)
    assert "host_heartbeat" not in line
    await lines.wait_for(lambda s: "host_lost" in s and proc.name in s, json_lines=False)


async def test_spy_shows_calls_into_and_out_of_a_component(nats_server, lattice, hosts, follow):
    from tests.components.build import build_wat

    await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        for wat, cid in (("chain", "first"), ("middle", "second"), ("tail", "third")):
            await c.start_component(str(build_wat(wat)), cid)
        store = c.lattice_store()
        await store.put_link(Link(source_id="first", target="second", wit_namespace="test", wit_package="chain",
                                  interfaces=["next"]))
        await store.put_link(Link(source_id="second", target="third", wit_namespace="test", wit_package="chain",
                                  interfaces=["runner"]))
        spy = follow("spy", "second", "-o", "json")
        table = follow("spy", "second")

        # the workers hear of the spy a moment after it starts: call until its records come
        async def spied() -> dict | None:
            assert await c.call("first", "test:chain/runner.run", "hello spy") == "hello spy"
            try:
                return json.loads(await asyncio.to_thread(spy.lines.get, True, 0.5))
            except queue.Empty:
                return None

        first = await eventually(spied, 20, what="a spy record")
        got = [first] + [json.loads(await asyncio.to_thread(spy.next_line, 10)) for _ in range(1)]
        out = next(r for r in got if r["direction"] == "out")
        into = next(r for r in got if r["direction"] == "in")
        assert (into["caller"], into["target"], into["component"]) == ("first", "second", "second")
        assert into["function"] == "test:chain/next.call" and '"hello spy"' in into["args"]
        assert into["result"] == '"hello spy"' and into["outcome"] == "ok" and into["duration_ms"] > 0
        assert (out["caller"], out["target"], out["function"]) == ("second", "third", "test:chain/runner.run")
        assert '"hello spy"' in out["args"]
        assert out["outcome"] == "ok" and out["duration_ms"] <= into["duration_ms"]

        # a failing call: its outcome and error, as the caller saw it
        await store.delete_link("second", "test", "chain")

        async def failed() -> dict | None:
            with contextlib.suppress(RpcError):
                await c.call("first", "test:chain/runner.run", "no link")
            while True:
                try:
                    r = json.loads(await asyncio.to_thread(spy.lines.get, True, 0.5))
                except queue.Empty:
                    return None
                if r["outcome"] == "error":
                    return r

        err = await eventually(failed, 20, what="a failed call's spy record")
        assert err["direction"] == "in" and err["error_kind"] == "missing_link" and "test:chain" in err["result"]

        line = await table.wait_for(lambda s: "IN  first -> second" in s, json_lines=False)
        assert "hello spy" in line or "no link" in line


def test_ui_on_a_taken_port_says_so_in_one_line(cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        out = cli("ui", "--port", str(taken.getsockname()[1]), timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: cannot serve the dashboard on 127.0.0.1:")
    assert "--port" in out.stderr and len(out.stderr.strip().splitlines()) == 1
