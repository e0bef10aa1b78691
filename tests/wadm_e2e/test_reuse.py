"""``properties.reuse`` through the real controller and host: deployed, reported, changed in place."""

from __future__ import annotations

import shutil

from tests.components.build import build_wat
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.control import HostInfo
from trellis.interfaces.events import Event, EventType
from trellis.wadm.controller.view import LatticeView
from trellis.wadm.observed import Reuse

from .helpers import component_app, deployed_at, wait_status

CID = "counting-counter"


def counting_app(version: str, reuse: str) -> str:
    """One `hostile` component (its `counter` export counts calls in a module global), one instance."""
    text = component_app("counting", "./hostile.wasm", version=version, instances=1, component="counter")
    props = "        image: ./hostile.wasm\n"
    assert props in text
    return text.replace(props, props + (f"        reuse: {reuse}\n" if reuse else ""))


async def test_manifest_reuse_reaches_the_host_and_a_change_is_applied_in_place(
        nats_server, lattice, hosts, controllers, wadm_client, write_manifest, tmp_path):
    shutil.copy(build_wat("hostile"), tmp_path / "hostile.wasm")
    h = await hosts.start()  # one worker: consecutive calls meet the same warm instance
    await controllers.start()
    w = wadm_client

    async def deploy(version: str, reuse: str) -> None:
        path = write_manifest(counting_app(version, reuse), f"{version}.yaml")
        await w.put(path.read_text(), base_dir=str(tmp_path))
        await w.deploy("counting", version)

    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy("v1", "{max_invocations: 3}")
        await wait_status(w, "counting", "deployed")
        comp = await deployed_at(w, c, "counting", "v1", h.id, 30)
        assert comp.id == CID and comp.reuse is not None
        assert (comp.reuse.max_invocations, comp.reuse.max_idle_s) == (3, None)
        # one instance serves three calls, then a fresh one starts counting again
        assert [await c.call(CID, "counter") for _ in range(4)] == [1, 2, 3, 1]

        # a new version that changes only reuse: the same placement is updated in place
        await deploy("v2", "{max_invocations: 1000, max_idle_s: 60}")
        comp2 = await deployed_at(w, c, "counting", "v2", h.id, 30)
        assert comp2.reuse is not None and (comp2.reuse.max_invocations, comp2.reuse.max_idle_s) == (1000, 60.0)
        assert comp2.revision == comp.revision + 1  # updated on its host, not stopped and started
        assert [await c.call(CID, "counter") for _ in range(5)] == [1, 2, 3, 4, 5]

        # dropping reuse from the manifest returns to the default: a fresh instance per call
        await deploy("v3", "")
        comp3 = await deployed_at(w, c, "counting", "v3", h.id, 30)
        assert comp3.reuse is not None and (comp3.reuse.max_invocations, comp3.reuse.max_idle_s) == (1, None)
        assert [await c.call(CID, "counter") for _ in range(3)] == [1, 1, 1]


def test_view_reads_reuse_from_inventories_and_outcome_events():
    v = LatticeView()
    info = HostInfo.model_validate({
        "id": "H1", "name": "h1", "lattice": "t", "labels": {}, "version": "0", "uptime_s": 1.0,
        "started_at": "now", "capacity": {"cpus": 2, "memory_total_bytes": 10, "memory_available_bytes": 5,
                                          "load_1m": 0.1},
        "components": [
            {"id": "new", "image": "i", "reuse": {"max_invocations": 4, "max_idle_s": 2, "from_the_future": 1}},
            {"id": "old", "image": "i"},  # a host from before reuse reporting
        ],
    })
    v.host_seen(info, now=0)
    comps = v.snapshot().hosts["H1"].components
    assert comps["new"].reuse == Reuse(4, 2.0) and comps["old"].reuse is None

    scaled = {"host_id": "H1", "component_id": "new", "image": "i", "max_instances": 1, "annotations": {},
              "reuse": {"max_invocations": 9, "max_idle_s": None}}
    assert v.apply_event(Event.new(EventType.COMPONENT_SCALED, "H1", scaled), now=1) is True  # drift matters
    assert v.snapshot().hosts["H1"].components["new"].reuse == Reuse(9)
    garbled = {**scaled, "reuse": {"max_invocations": "lots"}}
    v.apply_event(Event.new(EventType.COMPONENT_SCALED, "H1", garbled), now=2)
    assert v.snapshot().hosts["H1"].components["new"].reuse is None  # unreadable: treated as not reported
