"""Applications through their life: put, deploy, call, upgrade without downtime, undeploy, delete."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.wadm_client import WadmError
from trellis.wadm.observed import APP_ANNOTATION, APP_VERSION_ANNOTATION, PASS_ANNOTATION

from ..harness import eventually
from .helpers import component_app, placements, wait_status


async def test_deploy_upgrade_undeploy_delete(nats_server, lattice, hosts, controllers, wadm_client, wasm,
                                              write_manifest, tmp_path):
    shutil.copy(wasm["adder"], tmp_path / "adder.wasm")
    shutil.copy(wasm["adder"], tmp_path / "adder-v2.wasm")  # same code, another image: a real rollover
    h1 = await hosts.start()
    h2 = await hosts.start()
    await controllers.start()
    w = wadm_client

    v1 = write_manifest(component_app("calc", "./adder.wasm", version="v1", instances=4), "v1.yaml")
    put = await w.put(v1.read_text(), base_dir=str(tmp_path))
    assert (put.name, put.version, put.created) == ("calc", "v1", True)
    again = await w.put(v1.read_text(), base_dir=str(tmp_path))
    assert again.created is False  # same version, same content: nothing new
    stored = await w.get("calc")
    image = stored.manifest["spec"]["components"][0]["properties"]["image"]
    assert image == f"file://{tmp_path / 'adder.wasm'}"  # resolved before storing
    assert (await w.status("calc")).status == "undeployed"

    await w.deploy("calc")
    st = await wait_status(w, "calc", "deployed")
    assert st.version == "v1" and st.components[0].running == 4 and st.components[0].desired == 4

    async with LatticeClient(nats_server.url, lattice) as c:
        assert await c.call("calc-adder", "add", 2, 40) == 42
        where = await placements(c, "calc-adder")
        assert where == {h1.id: 2, h2.id: 2}  # two hosts, the share split evenly
        inv = await c.get_inventory(h1.id)
        tags = inv.components[0].annotations
        assert tags[APP_ANNOTATION] == "calc" and tags[APP_VERSION_ANNOTATION] == "v1"
        assert tags[PASS_ANNOTATION].startswith("wadm-")  # the pass that placed it

        # a version with the same name but other content is refused
        changed = component_app("calc", "./adder.wasm", version="v1", instances=3)
        with pytest.raises(WadmError) as err:
            await w.put(changed, base_dir=str(tmp_path))
        assert err.value.code == ErrorCode.CONFLICT and "already exists" in err.value.message

        # upgrade: a new image rolls over host by host while calls keep being answered
        calls: dict[str, Any] = {"ok": 0, "failed": []}
        stop = asyncio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    assert await c.call("calc-adder", "add", 1, 2, timeout_s=5) == 3
                    calls["ok"] += 1
                except Exception as exc:  # recorded, asserted below
                    calls["failed"].append(repr(exc))
                await asyncio.sleep(0.01)

        callers = [asyncio.create_task(caller()) for _ in range(3)]
        v2 = write_manifest(component_app("calc", "./adder-v2.wasm", version="v2", instances=4), "v2.yaml")
        await w.put(v2.read_text(), base_dir=str(tmp_path))
        await w.deploy("calc", "v2")

        async def rolled() -> bool:
            st = await w.status("calc")
            images = {comp.image for h in await c.get_hosts(timeout_s=0.5) for comp in h.components}
            return st.status == "deployed" and st.version == "v2" and images == {f"file://{tmp_path / 'adder-v2.wasm'}"}

        await eventually(rolled, 30, interval=0.1, what="v2 rolled out")
        stop.set()
        await asyncio.gather(*callers)
        assert calls["failed"] == [] and calls["ok"] > 0
        assert sum((await placements(c, "calc-adder")).values()) == 4
        inv = await c.get_inventory(h1.id)
        assert inv.components[0].annotations[APP_VERSION_ANNOTATION] == "v2"

        versions = await w.versions("calc")
        assert [(v.version, v.deployed) for v in versions.versions] == [("v1", False), ("v2", True)]

        # roll back to v1 by deploying the stored version
        await w.deploy("calc", "v1")
        st = await wait_status(w, "calc", "deployed")
        assert st.version == "v1"

        # a deployed application cannot be deleted without undeploying it
        with pytest.raises(WadmError) as err:
            await w.delete("calc")
        assert err.value.code == ErrorCode.CONFLICT and "undeploy" in err.value.message

        await w.undeploy("calc")
        await wait_status(w, "calc", "undeployed")
        assert await placements(c, "calc-adder") == {}

        gone = await w.delete("calc", "v2")
        assert gone.deleted_versions == ["v2"]
        gone = await w.delete("calc")
        assert gone.deleted_versions == ["v1"]
        with pytest.raises(WadmError) as err:
            await w.status("calc")
        assert err.value.code == ErrorCode.NOT_FOUND
        assert (await w.list()).apps == []


async def test_delete_with_undeploy_removes_everything(nats_server, lattice, hosts, controllers, wadm_client, wasm,
                                                       tmp_path):
    await hosts.start()
    await controllers.start()
    w = wadm_client
    await w.put(component_app("gone", wasm["adder"], instances=2))
    await w.deploy("gone")
    await wait_status(w, "gone", "deployed")
    reply = await w.delete("gone", undeploy=True)
    assert reply.undeployed and reply.deleted_versions == ["v1"]
    async with LatticeClient(nats_server.url, lattice) as c:
        await eventually(lambda: _none_of(c, "gone-adder"), 20, what="placements removed after delete")


async def _none_of(c: LatticeClient, cid: str) -> bool:
    return await placements(c, cid) == {}


async def test_invalid_manifests_are_refused_with_every_problem(controllers, wadm_client, tmp_path):
    await controllers.start()
    bad = component_app("Bad Name!", "./x.wasm", instances=-1)
    with pytest.raises(WadmError) as err:
        await wadm_client.put(bad, base_dir=str(tmp_path))
    assert err.value.code == ErrorCode.BAD_REQUEST
    assert len(err.value.problems) >= 2
    assert any("name" in p for p in err.value.problems) and any("instances" in p for p in err.value.problems)

    # a relative image path needs the manifest's directory
    with pytest.raises(WadmError) as err:
        await wadm_client.put(component_app("rel", "./x.wasm"))
    assert err.value.code == ErrorCode.BAD_REQUEST and "relative" in err.value.message

    with pytest.raises(WadmError) as err:
        await wadm_client.deploy("nope")
    assert err.value.code == ErrorCode.NOT_FOUND


async def test_a_broken_watch_is_fatal_not_silent(controllers, monkeypatch):
    from trellis.interfaces.store import LatticeStore

    async def broken(self, **kw):
        raise RuntimeError("JetStream went away")
        yield  # pragma: no cover

    monkeypatch.setattr(LatticeStore, "watch", broken)
    with pytest.raises(RuntimeError) as err:
        await controllers.start()
    assert "link and config watch" in str(err.value) and "JetStream went away" in str(err.value)
    assert controllers.started[0].status.value == "closed"
