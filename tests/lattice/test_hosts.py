"""Hosts join a lattice, advertise themselves and answer the control interface."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from trellis.interfaces import subjects
from trellis.interfaces.client import ControlError, LatticeClient
from trellis.interfaces.control import CtlReply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.events import Event, EventType

from ..harness import HostProcess, eventually


async def test_hosts_answer_ping_with_capacity(nats_server, lattice, hosts):
    a = await hosts.start(labels={"zone": "eu-1"})
    b = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        found = await c.get_hosts(timeout_s=0.5)
    assert {h.id for h in found} == {a.id, b.id}
    ha = next(h for h in found if h.id == a.id)
    assert ha.labels["zone"] == "eu-1"
    for key in ("os", "arch", "hostname", "python"):
        assert ha.labels[key]
    assert ha.capacity.cpus >= 1
    assert 0 < ha.capacity.memory_available_bytes <= ha.capacity.memory_total_bytes
    assert a.id.startswith("N") and len(a.id) == 56


async def test_events_started_heartbeat_stopped(nats_server, lattice, hosts):
    nc = await nats.connect(nats_server.url)
    seen: list[Event] = []
    sub = await nc.subscribe(subjects.events_wildcard(lattice), cb=_collector(seen))
    try:
        h = await hosts.start(heartbeat_interval_s=0.2)
        await eventually(lambda: any(e.type == EventType.HOST_HEARTBEAT for e in seen), 5, what="heartbeat")
        await h.close()
        await eventually(lambda: any(e.type == EventType.HOST_STOPPED for e in seen), 5, what="host_stopped")
        types = [e.type for e in seen]
        assert types[0] == EventType.HOST_STARTED
        beat = next(e for e in seen if e.type == EventType.HOST_HEARTBEAT)
        assert beat.source == h.id and beat.data["capacity"]["cpus"] >= 1
    finally:
        await sub.unsubscribe()
        await nc.close()


async def test_heartbeats_are_light_until_the_inventory_changes(nats_server, lattice, hosts):
    """Issue 16 (idle CPU): a heartbeat carries the host's whole inventory only when it changed, else its
    digest; wadm's view sees a change at the next heartbeat, and one that missed the whole heartbeat
    (its digest is news) marks the host to be asked, whose answer carries the change."""
    from trellis.wadm.controller.view import LatticeView

    nc = await nats.connect(nats_server.url)
    beats: list[tuple[int, Event]] = []

    async def on_beat(msg) -> None:
        beats.append((len(msg.data), Event.decode(msg.data)))

    sub = await nc.subscribe(subjects.event(lattice, EventType.HOST_HEARTBEAT), cb=on_beat)
    try:
        h = await hosts.start(heartbeat_interval_s=0.1)
        await eventually(lambda: len(beats) >= 3, 10, what="three heartbeats")
        (size, first), rest = beats[0], beats[1:3]
        assert "components" in first.data and first.data["inventory"] == h.info().inventory
        for n, light in rest:  # nothing changed: alive, capacity, the same digest, no inventory
            assert "components" not in light.data and "labels" not in light.data, light.data
            assert light.data["inventory"] == first.data["inventory"] and light.data["capacity"]["cpus"] >= 1
            assert n < size
        view = LatticeView()
        for _, ev in beats:
            view.apply_event(ev, now=0.0)
        assert view.hosts[h.id].labels.get("zone") is None and not view.stale
        seen = len(beats)
        async with LatticeClient(nats_server.url, lattice) as c:
            await c.put_label(h.id, "zone", "eu-2")
            await eventually(lambda: any("labels" in e.data for _, e in beats[seen:]), 10, what="a whole heartbeat")
            full = next(e for _, e in beats[seen:] if "labels" in e.data)
            assert full.data["labels"]["zone"] == "eu-2" and full.data["inventory"] != first.data["inventory"]
            assert view.apply_event(full, now=1.0) is True  # the change, at the next heartbeat
            assert view.hosts[h.id].labels["zone"] == "eu-2"
            # a view that missed that heartbeat learns of the change from the next light one's digest
            missed = LatticeView()
            missed.apply_event(first, now=0.0)
            await eventually(lambda: "labels" not in beats[-1][1].data, 10, what="a light heartbeat after it")
            assert missed.apply_event(beats[-1][1], now=1.0) is False and missed.stale == {h.id}
            assert missed.host_seen(await c.get_inventory(h.id), now=1.0) is True  # what wadm asks, it gets
            assert missed.hosts[h.id].labels["zone"] == "eu-2" and not missed.stale
    finally:
        await sub.unsubscribe()
        await nc.close()


def _collector(seen: list[Event]):
    async def cb(msg) -> None:
        seen.append(Event.decode(msg.data))

    return cb


async def test_labels_put_del_and_builtins_read_only(nats_server, lattice, hosts):
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        info = await c.put_label(h.id, "zone", "eu-2")
        assert info.labels["zone"] == "eu-2"
        info = await c.del_label(h.id, "zone")
        assert "zone" not in info.labels
        with pytest.raises(ControlError) as err:
            await c.put_label(h.id, "os", "plan9")
        assert err.value.code == ErrorCode.READ_ONLY and "read-only" in str(err.value)
        with pytest.raises(ControlError) as err:
            await c.del_label(h.id, "hostname")
        assert err.value.code == ErrorCode.READ_ONLY
        with pytest.raises(ControlError) as err:
            await c.del_label(h.id, "nope")
        assert err.value.code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "op,payload,code,words",
    [
        ("label.put", b"not json", ErrorCode.BAD_REQUEST, "not valid JSON"),
        ("label.put", b"[1,2]", ErrorCode.BAD_REQUEST, "JSON object"),
        ("label.put", b'{"key": 5}', ErrorCode.BAD_REQUEST, "key"),
        ("label.put", b'{"key": "a", "value": "b", "extra": 1}', ErrorCode.BAD_REQUEST, "extra"),
        ("label.put", b"\xff\xfe", ErrorCode.BAD_REQUEST, "JSON"),
        ("frobnicate", b"{}", ErrorCode.UNKNOWN_OPERATION, "frobnicate"),
        ("stop", b'{"timeout_s": -1}', ErrorCode.BAD_REQUEST, "timeout_s"),
    ],
)
async def test_malformed_control_requests_get_errors(nats_server, lattice, hosts, op, payload, code, words):
    h = await hosts.start()
    nc = await nats.connect(nats_server.url)
    try:
        msg = await nc.request(subjects.host_op(lattice, h.id, op), payload, timeout=2)
        reply = CtlReply.model_validate_json(msg.data)
        assert not reply.success and reply.code == code and words in reply.message
        # the host keeps serving
        async with LatticeClient(nats_server.url, lattice, nc=nc) as c:
            assert (await c.get_inventory(h.id)).id == h.id
    finally:
        await nc.close()


async def test_two_lattices_isolated(nats_server, lattice, hosts):
    other = lattice + "x"
    a = await hosts.start()
    b = await hosts.start(lattice=other)
    nc = await nats.connect(nats_server.url)
    events: list[Event] = []
    sub = await nc.subscribe(subjects.events_wildcard(other), cb=_collector(events))
    try:
        async with LatticeClient(nats_server.url, lattice, nc=nc) as c:
            assert [h.id for h in await c.get_hosts(0.4)] == [a.id]
            with pytest.raises(ControlError) as err:
                await c.get_inventory(b.id)
            assert err.value.code == ErrorCode.NO_RESPONDERS
        async with LatticeClient(nats_server.url, other, nc=nc) as c:
            assert [h.id for h in await c.get_hosts(0.4)] == [b.id]
        await eventually(lambda: len(events) >= 2, 5, what="events on the other lattice")
        assert {e.source for e in events} == {b.id}
    finally:
        await sub.unsubscribe()
        await nc.close()


async def test_stop_host_gracefully(nats_server, lattice, hosts):
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.stop_host(h.id, timeout_s=2)
        await asyncio.wait_for(h.finished(), 10)
        assert h.close_reason == "stop requested"
        assert await c.get_hosts(0.3) == []


def test_cli_host_process_sigkill_and_stop(nats_server, lattice, cli, tmp_path):
    """The real `trellis host` command: listed, labelled, SIGKILLed, stopped."""
    a = HostProcess(nats_server.url, lattice, "--label", "zone=eu-1", "--heartbeat-interval", "0.3",
                    log=tmp_path / "a.log").wait_started()
    b = HostProcess(nats_server.url, lattice, log=tmp_path / "b.log").wait_started()
    try:
        out = cli("get", "hosts", "-o", "json")
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout)
        assert {h["id"] for h in listed} == {a.id, b.id}
        for h in listed:
            assert {"id", "name", "labels", "version", "uptime_s", "capacity"} <= set(h)
            assert {"cpus", "memory_total_bytes", "memory_available_bytes", "load_1m"} <= set(h["capacity"])
        table = cli("get", "hosts")
        assert a.id in table.stdout and "zone=eu-1" in table.stdout

        assert cli("label", "put", a.id, "tier=gold").returncode == 0
        inv = json.loads(cli("get", "inventory", a.id, "-o", "json").stdout)
        assert inv["labels"]["tier"] == "gold"
        bad = cli("label", "put", a.id, "arch=sparc")
        assert bad.returncode != 0 and "read-only" in bad.stderr
        assert cli("label", "del", a.id, "tier").returncode == 0

        a.kill()  # no goodbye
        listed = json.loads(cli("get", "hosts", "-o", "json").stdout)
        assert [h["id"] for h in listed] == [b.id]

        stopped = cli("stop", "host", b.id, "--timeout", "2")
        assert stopped.returncode == 0, stopped.stderr
        assert b.wait(15) == 0
        assert json.loads(cli("get", "hosts", "-o", "json").stdout) == []
        missing = cli("get", "inventory", b.id)
        assert missing.returncode != 0 and "nobody answers" in missing.stderr
    finally:
        a.kill()
        b.kill()


async def test_hosts_named_by_name_or_id_prefix(nats_server, lattice, hosts):
    a = await hosts.start()
    b = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        by_id = {h.id: h for h in await c.get_hosts()}
        name_a = by_id[a.id].name
        assert (await c.get_inventory(name_a)).id == a.id
        assert (await c.get_inventory(b.id[:12])).id == b.id
        assert (await c.put_label(name_a, "zone", "eu-1")).labels["zone"] == "eu-1"
        assert (await c.del_label(a.id[:12], "zone")).labels.get("zone") is None
        with pytest.raises(ControlError) as err:
            await c.get_inventory("no-such-host")
        assert err.value.code == ErrorCode.NOT_FOUND
        assert "no-such-host" in err.value.message and name_a in err.value.message
        with pytest.raises(ControlError) as err:
            await c.get_inventory("N")  # every host id starts so
        assert err.value.code == ErrorCode.BAD_REQUEST and "names 2 hosts" in err.value.message


def test_the_inventory_digest_serialises_a_component_once_until_it_is_replaced(monkeypatch):
    """Issue 16 (idle CPU): a host beats every second; serialising each of its components' descriptions
    at every beat grew with the apps it runs. A description is serialised again only when replaced."""
    from trellis.interfaces.control import Capacity, ComponentDescription, ComponentJson, HostInfo, inventory_digest

    comps = [ComponentDescription(id=f"c{k}", image=f"lattice://sha256:{k}", annotations={"app": f"a{k}"})
             for k in range(3)]
    dumped: list[str] = []
    real = ComponentDescription.model_dump_json

    def counting(self, **kw):
        dumped.append(self.id)
        return real(self, **kw)

    monkeypatch.setattr(ComponentDescription, "model_dump_json", counting)
    described: ComponentJson = {}

    def info(uptime_s: float) -> HostInfo:
        return HostInfo(id="N1", name="h", lattice="l", labels={}, version="0", started_at="now", uptime_s=uptime_s,
                        capacity=Capacity(cpus=2, memory_total_bytes=2, memory_available_bytes=1, load_1m=uptime_s),
                        components=list(comps))

    first = inventory_digest(info(1.0), described)
    assert sorted(dumped) == ["c0", "c1", "c2"]
    dumped.clear()
    assert inventory_digest(info(2.0), described) == first and dumped == []  # nothing changed: nothing serialised
    comps[1] = comps[1].model_copy(update={"max_instances": 4})  # a scale replaces the description
    scaled = inventory_digest(info(3.0), described)
    assert dumped == ["c1"] and scaled != first
    assert inventory_digest(info(4.0)) == scaled  # the same digest as computed from nothing
    del comps[0]
    assert inventory_digest(info(5.0), described) not in (first, scaled) and set(described) == {id(c) for c in comps}
