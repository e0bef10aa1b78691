"""Status with reasons: no eligible host, an image that cannot be fetched, a provider that cannot start."""

from __future__ import annotations

import shutil
from typing import Any

from trellis.interfaces.client import LatticeClient

from ..harness import eventually
from .helpers import component_app, placements, wait_status


async def test_no_eligible_host_fails_with_the_reason(hosts, controllers, wadm_client, wasm):
    await hosts.start(labels={"zone": "eu"})
    await controllers.start()
    await wadm_client.put(component_app("mars", wasm["adder"], instances=2, spread="""
        - name: red
          requirements: {zone: mars}
    """))
    await wadm_client.deploy("mars")
    st = await wait_status(wadm_client, "mars", "failed")
    assert "no eligible host for spread 'red'" in st.message and "zone=mars" in st.message
    comp = st.components[0]
    assert comp.status == "failed" and comp.running == 0 and "zone=mars" in comp.message
    # a host with the label joins: the app converges by itself (level-triggered)
    await hosts.start(labels={"zone": "mars"})
    await wait_status(wadm_client, "mars", "deployed")


async def test_unfetchable_image_fails_with_the_hosts_error_then_recovers(nats_server, lattice, hosts, controllers,
                                                                          wadm_client, wasm, tmp_path):
    await hosts.start()
    await controllers.start(backoff_max_s=1.0)
    missing = tmp_path / "not-built-yet.wasm"
    await wadm_client.put(component_app("late", missing, instances=1))
    await wadm_client.deploy("late")
    st = await wait_status(wadm_client, "late", "failed")
    comp = st.components[0]
    assert comp.status == "failed" and f"cannot read {missing}" in comp.message and "start on host" in comp.message
    assert "cannot read" in st.message

    # the file appears: the retry (with backoff) picks it up, and the failure is forgotten
    shutil.copy(wasm["adder"], missing)
    st = await wait_status(wadm_client, "late", "deployed")
    assert st.components[0].message == ""
    async with LatticeClient(nats_server.url, lattice) as c:
        assert await c.call("late-adder", "add", 1, 2) == 3


async def test_a_new_version_that_cannot_start_keeps_the_old_one_serving(nats_server, lattice, hosts, controllers,
                                                                         wadm_client, wasm, tmp_path):
    await hosts.start()
    await hosts.start()
    await controllers.start()
    await wadm_client.put(component_app("keep", wasm["adder"], version="v1", instances=2))
    await wadm_client.deploy("keep")
    await wait_status(wadm_client, "keep", "deployed")
    await wadm_client.put(component_app("keep", tmp_path / "missing.wasm", version="v2", instances=2))
    await wadm_client.deploy("keep")
    st = await wait_status(wadm_client, "keep", "failed")
    assert "cannot read" in st.message
    async with LatticeClient(nats_server.url, lattice) as c:
        assert sum((await placements(c, "keep-adder")).values()) == 2  # v1 still serves
        assert await c.call("keep-adder", "add", 2, 2) == 4
        await wadm_client.deploy("keep", "v1")  # roll back
        await wait_status(wadm_client, "keep", "deployed")


async def test_provider_that_cannot_start_is_reported(hosts, controllers, wadm_client, write_manifest, tmp_path):
    await hosts.start()
    await controllers.start()
    (tmp_path / "crash.py").write_text("raise SystemExit(3)\n")
    path = write_manifest("""
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: crashy
        spec:
          components:
            - name: crash
              type: capability
              properties:
                image: ./crash.py
    """)
    put = await wadm_client.put(path.read_text(), base_dir=str(tmp_path))
    assert put.version.startswith("auto-")  # no version annotation: named after the content
    await wadm_client.deploy("crashy")
    st = await wait_status(wadm_client, "crashy", "failed", timeout=30)
    assert "exited with 3" in st.components[0].message

    async def listed() -> bool:
        apps = (await wadm_client.list()).apps
        return [(a.name, a.status) for a in apps] == [("crashy", "failed")]

    await eventually(listed, 5, what="list to show the failure")


async def test_a_quiet_apps_resync_plans_it_twice_and_announces_the_status_of_that_pass(hosts, controllers,
                                                                                         wadm_client, wasm,
                                                                                         monkeypatch):
    """A deployed app whose last pass issued nothing is passed again every ``quiet_resync_s`` (a safety net).
    That pass plans it for commands and once for its status (a problem in its grace period counts there); the
    status it announces reuses the first plan (the same view), and housekeeping does not announce it again:
    each resync of an idle lattice's apps cost four plans per app (and the manifest serialised for its digest
    each time), the largest part of an idle controller's CPU at N = 50."""
    from trellis.wadm.controller import controller as controller_module
    from trellis.wadm.controller import status as status_module
    from trellis.wadm.scaler import plan

    await hosts.start()
    ctl = await controllers.start(quiet_resync_s=0.3)
    await wadm_client.put(component_app("calm", wasm["adder"], instances=1))
    await wadm_client.deploy("calm")
    await wait_status(wadm_client, "calm", "deployed")
    await eventually(lambda: "calm" in ctl._quiet, what="the app's pass to be quiet")

    plans = {"pass": 0, "status": 0}
    passes = 0

    def counting(key: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plans[key] += 1
            return real(*args, **kwargs)
        return wrapper

    real_pass = ctl.reconcile_app

    async def counted_pass(name: str) -> None:
        nonlocal passes
        await real_pass(name)
        passes += 1

    monkeypatch.setattr(controller_module, "plan", counting("pass", plan))
    monkeypatch.setattr(status_module, "plan", counting("status", plan))
    monkeypatch.setattr(ctl, "reconcile_app", counted_pass)
    view = ctl._view_version
    await eventually(lambda: passes >= 3, timeout=15, what="three resync passes")
    assert ctl._view_version == view, "the lattice view changed: these were not quiet resyncs"
    assert "calm" in ctl._quiet
    assert plans == {"pass": 2 * passes, "status": 0}, (plans, passes)
    st = await wadm_client.status("calm")  # the API plans its status itself
    assert st.status == "deployed" and plans["status"] == 1
