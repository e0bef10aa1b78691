"""The controller's pure parts, with plain data: the view, records, failures, command phases, keys."""

from __future__ import annotations

import pytest

from trellis.interfaces.control import HostInfo
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.links import Link
from trellis.wadm.commands import PutConfig, PutLink, ScaleComponent, StartComponent, StopComponent, UpdateComponent
from trellis.wadm.controller import records as rec
from trellis.wadm.controller.app_store import (
    config_owner_key,
    link_owner_key,
    manifest_key,
    parse_manifest_key,
    parse_owner_key,
)
from trellis.wadm.controller.executor import chains, phases
from trellis.wadm.controller.failures import FailureBook
from trellis.wadm.controller.memory import AppMemory
from trellis.wadm.controller.records import RecordError
from trellis.wadm.controller.status import deployed_status
from trellis.wadm.controller.view import LatticeView
from trellis.wadm.manifest import load_manifest, manifest_from_data
from trellis.wadm.observed import APP_ANNOTATION

from .helpers import component_app


def _info(host_id: str, components: list[dict] | None = None, labels: dict | None = None,
          interval: float = 1.0) -> HostInfo:
    return HostInfo.model_validate({
        "id": host_id, "name": host_id.lower(), "lattice": "t", "labels": labels or {}, "version": "0",
        "uptime_s": 1.0, "started_at": "now", "heartbeat_interval_s": interval,
        "capacity": {"cpus": 2, "memory_total_bytes": 10, "memory_available_bytes": 5, "load_1m": 0.1},
        "components": components or [],
    })


def _event(t: str, data: dict, source: str = "H1") -> Event:
    return Event.new(t, source, data)


def test_view_folds_heartbeats_and_outcomes_and_expires_silent_hosts():
    v = LatticeView(expiry_intervals=3)
    assert v.host_seen(_info("H1"), now=0.0) is True  # a new host matters
    assert v.host_seen(_info("H1"), now=0.5) is False  # the same inventory does not
    scaled = {"host_id": "H1", "component_id": "c", "image": "file:///c.wasm", "max_instances": 2,
              "annotations": {APP_ANNOTATION: "app"}}
    assert v.apply_event(_event(EventType.COMPONENT_SCALED, scaled), now=0.6) is True
    snap = v.snapshot()
    assert snap.hosts["H1"].components["c"].max_instances == 2
    assert v.snapshot() is snap  # cached until something changes
    assert v.app_names() == {"app"}
    # an outcome for a host we never heard of is ignored until its heartbeat
    assert v.apply_event(_event(EventType.COMPONENT_SCALED, {**scaled, "host_id": "H9"}), now=0.7) is False
    # a stop is max_instances 0
    assert v.apply_event(_event(EventType.COMPONENT_SCALED, {**scaled, "max_instances": 0}), now=0.8) is True
    assert "c" not in v.snapshot().hosts["H1"].components
    # labels
    assert v.apply_event(_event(EventType.LABELS_CHANGED, {"host_id": "H1", "labels": {"zone": "x"}}), now=1.0)
    assert v.snapshot().hosts["H1"].labels == {"zone": "x"}
    # silent for more than 3 intervals: gone
    v.host_seen(_info("H2", interval=0.5), now=1.0)
    assert v.expire(now=2.4) == []
    assert v.expire(now=2.6) == ["H2"]
    assert v.expire(now=4.1) == ["H1"]
    assert v.snapshot().hosts == {}


def test_view_host_stopped_and_providers():
    v = LatticeView()
    v.host_seen(_info("H1"), now=0)
    started = {"host_id": "H1", "provider_id": "p", "image": "builtin:x", "annotations": {}}
    assert v.apply_event(_event(EventType.PROVIDER_STARTED, started), now=1)
    # a restart (not a stop) keeps it, as restarting (not healthy: the status says so)
    assert v.apply_event(_event(EventType.PROVIDER_STOPPED, {**started, "reason": "exited with 1; restarting"}),
                         now=1)
    assert v.snapshot().hosts["H1"].providers["p"].status == "restarting"
    # health outcomes are applied at once, with their message
    assert v.apply_event(_event(EventType.HEALTH_CHECK_FAILED, {**started, "message": "cannot listen on :80"}), now=1)
    prov = v.snapshot().hosts["H1"].providers["p"]
    assert (prov.healthy, prov.problem()) == (False, "unhealthy: cannot listen on :80")
    assert v.apply_event(_event(EventType.HEALTH_CHECK_PASSED, {**started, "message": "ok"}), now=1)
    assert v.snapshot().hosts["H1"].providers["p"].healthy
    assert v.apply_event(_event(EventType.PROVIDER_STOPPED, {**started, "reason": "stopped"}), now=1)
    assert v.apply_event(_event(EventType.HOST_STOPPED, {"host_id": "H1"}), now=2)
    assert v.hosts == {}


def test_view_links_configs_and_owners():
    v = LatticeView()
    link = Link(source_id="a", target="b", wit_namespace="wasi", wit_package="keyvalue", interfaces=["store"])
    assert v.put_link(link) and not v.put_link(link)
    assert v.set_link_owner(link.identity, "app")
    assert v.put_config("app-cfg", {"k": "v"})
    assert v.set_config_owner("app-cfg", "app")
    snap = v.snapshot()
    assert snap.links[0].app == "app" and snap.links[0].namespace == "wasi"
    assert snap.configs["app-cfg"].app == "app"
    assert v.app_names() == {"app"}
    assert v.delete_link(link.identity) and v.delete_config("app-cfg")
    assert v.app_names() == set()  # owner records of things that are gone do not count


def test_records_versions_deploy_delete():
    now = "t"
    r, created, dropped = rec.add_version(None, "shop", "v1", "d1", now)
    assert created and dropped == [] and r.latest.version == "v1"
    same, created, _ = rec.add_version(r, "shop", "v1", "d1", now)
    assert same is r and not created
    with pytest.raises(RecordError) as err:
        rec.add_version(r, "shop", "v1", "other", now)
    assert "already exists" in err.value.message
    r, _, _ = rec.add_version(r, "shop", "v2", "d2", now)
    r = rec.deploy(r, None, now)
    assert r.deployed_version == "v2"
    with pytest.raises(RecordError):
        rec.delete_version(r, "v2", now)  # deployed
    with pytest.raises(RecordError) as err:
        rec.deploy(r, "v9", now)
    assert err.value.code == "not_found"
    r2 = rec.delete_version(r, "v1", now)
    assert r2 is not None and [v.version for v in r2.versions] == ["v2"]
    r3 = rec.undeploy(r2, now)
    assert rec.delete_version(r3, "v2", now) is None


def test_records_keep_at_most_max_versions_and_never_drop_the_deployed_one():
    r, _, _ = rec.add_version(None, "a", "v0", "d0", "t")
    r = rec.deploy(r, "v0", "t")
    dropped_all: list[str] = []
    for i in range(1, rec.MAX_VERSIONS + 3):
        r, _, dropped = rec.add_version(r, "a", f"v{i}", f"d{i}", "t")
        dropped_all += dropped
    assert len(r.versions) == rec.MAX_VERSIONS
    assert r.find("v0") is not None and dropped_all == ["v1", "v2", "v3"]


def test_failure_book_backoff_doubles_and_forgets():
    book = FailureBook(base_s=0.5, max_s=2.0)
    cmd = StartComponent(host_id="H", component_id="c", image="i", max_instances=1, app="a")
    assert book.allowed(cmd, 0)
    f = book.failed(cmd, "cannot read /x", now=0)
    assert (f.attempts, f.retry_at) == (1, 0.5)
    assert not book.allowed(cmd, 0.4) and book.allowed(cmd, 0.5)
    assert [book.failed(cmd, "again", now=1).retry_at for _ in range(3)] == [2.0, 3.0, 3.0]
    assert book.for_app("a")[0].describe() == "start on host H failed (4 attempts): again"
    book.succeeded(cmd)
    assert book.for_app("a") == []
    book.failed(cmd, "x", now=0)
    book.clear_subjects("a", ["c"])
    assert book.for_app("a") == []


async def test_a_failure_of_a_command_under_way_when_its_app_is_deployed_again_is_not_remembered():
    """A start sent for v1 that fails after v2 was deployed (which clears the app's failures) must not
    make v2 'failed' with v1's reason (seen as 'not signed' for a v2 that was signed)."""
    import asyncio

    from trellis.wadm.controller.executor import CommandFailed, Executor

    sent, answer = asyncio.Event(), asyncio.Event()

    class Slow(Executor):
        def __init__(self) -> None:
            self.book, self.may_act = FailureBook(), lambda: True

        async def apply(self, cmd: object) -> None:
            sent.set()
            await answer.wait()
            raise CommandFailed("component c is not signed")

    ex = Slow()
    v1 = StartComponent(host_id="H", component_id="c", image="unsigned", max_instances=1, app="a")
    chain = asyncio.ensure_future(ex.run([v1], "p"))
    await asyncio.wait_for(sent.wait(), 5)
    ex.book.clear_app("a")  # what deploying v2 does
    answer.set()
    await asyncio.wait_for(chain, 5)
    assert ex.book.for_app("a") == []
    ex2 = Slow()
    answer.set()
    await ex2.run([v1], "p")  # the same failure with no deploy between: remembered
    assert [f.error for f in ex2.book.for_app("a")] == ["component c is not signed"]
    ex3 = Slow()
    planned_at = ex3.book.epoch("a")
    ex3.book.clear_app("a")  # deployed again after the pass read its record, before the command went out
    await ex3.run([v1], "p", {"a": planned_at})
    assert ex3.book.for_app("a") == []


def test_phases_keep_order_and_chains_serialise_one_target():
    cfg = PutConfig(name="n", values={"k": "v"}, app="a")
    s1 = StartComponent(host_id="H1", component_id="c", image="i", max_instances=1, app="a")
    s2 = StartComponent(host_id="H2", component_id="c", image="i", max_instances=1, app="a")
    u1 = UpdateComponent(host_id="H1", component_id="c", image="j", app="a")
    lk = PutLink(source_id="c", target="t", namespace="ns", package="p", interfaces=("i",), app="a")
    stop = StopComponent(host_id="H3", component_id="c", app="a")
    out = phases([cfg, s1, s2, u1, lk, stop])
    assert out == [[cfg], [s1, s2, u1], [lk], [stop]]
    assert chains(out[1]) == [[s1, u1], [s2]]


def test_owner_keys_round_trip():
    ident = ("my.comp", "wasi", "keyvalue", "default", "t-1")
    key = link_owner_key(ident)
    assert key.count(".") == 6 and parse_owner_key(key) == ("link", ident)
    assert parse_owner_key(config_owner_key("a.b c")) == ("config", "a.b c")
    assert parse_owner_key("owner.other.x") is None


def test_manifest_keys_round_trip():
    assert parse_manifest_key(manifest_key("shop", "v1.2.0+build/7")) == ("shop", "v1.2.0+build/7")
    assert parse_manifest_key("app.shop") is None and parse_manifest_key("manifest.shop") is None


def test_app_memory_keeps_the_newest_entry_of_each_key(tmp_path):
    mem = AppMemory()
    v1 = rec.add_version(None, "shop", "v1", "sha256:1", "t0")[0]
    deployed = rec.deploy(v1, "v1", "t1")
    # the controller's own write (revision 7) is applied before the watch delivers the older one (6)
    assert mem.set_record("shop", deployed, 7)
    assert not mem.set_record("shop", v1, 6)
    assert mem.records["shop"].deployed_version == "v1"
    assert mem.set_record("shop", v1, 8)  # newer: applied
    assert mem.records["shop"].deployed_version is None
    # deleted by this controller after reading revision 9: the late entry 9 does not bring it back
    mem.set_record("shop", deployed, 9)
    mem.record_deleted("shop", 9)
    assert not mem.set_record("shop", deployed, 9) and "shop" not in mem.records
    assert mem.set_record("shop", v1, 11) and "shop" in mem.records  # made again later

    m1 = load_manifest(component_app("shop", "./a.wasm", instances=1).encode(), base_dir=tmp_path)
    m2 = load_manifest(component_app("shop", "./a.wasm", instances=5).encode(), base_dir=tmp_path)
    assert mem.manifest("shop", "v1") is None
    mem.set_manifest("shop", "v1", m1.to_data(), 3)
    assert mem.manifest("shop", "v1") == m1
    # the version deleted and stored again with other content: the parsed copy is not kept
    mem.set_manifest("shop", "v1", None, 4)
    assert mem.manifest("shop", "v1") is None and mem.manifest_data("shop", "v1") is None
    mem.set_manifest("shop", "v1", m2.to_data(), 5)
    assert not mem.set_manifest("shop", "v1", m1.to_data(), 3)
    assert mem.manifest("shop", "v1") == m2 and mem.manifest_count == 1


def test_stored_manifests_read_back_as_the_same_version(tmp_path):
    text = component_app("shop", "./adder.wasm", version="", instances=3, spread="""
        - name: eu
          requirements: {zone: eu}
          weight: 2
    """).replace("    version: \n", "    description: no version\n")
    m = load_manifest(text.encode(), base_dir=tmp_path)
    assert m.version.startswith("auto-")
    back = manifest_from_data(m.to_data())
    assert back == m and back.version == m.version and back.digest() == m.digest()


def test_status_reports_a_failed_start_as_the_reason():
    m = load_manifest(component_app("a", "file:///x.wasm", instances=1).encode())
    book = FailureBook()
    cmd = StartComponent(host_id="H1", component_id="a-adder", image="file:///x.wasm", max_instances=1, app="a")
    book.failed(cmd, "cannot read /x.wasm: No such file or directory", now=0)
    v = LatticeView()
    v.host_seen(_info("H1"), now=0)
    st = deployed_status(m, v.snapshot(), book.for_app("a"))
    assert st.status == "failed" and st.components[0].status == "failed"
    assert "start on host H1 failed: cannot read /x.wasm" in st.components[0].message
    # without the failure it is simply on its way
    assert deployed_status(m, v.snapshot(), []).status == "reconciling"
    # scale commands have their own key
    scale = ScaleComponent(host_id="H1", component_id="a-adder", max_instances=2, app="a")
    assert book.allowed(scale, 0)


def test_heartbeats_from_newer_hosts_with_extra_fields_are_understood():
    data = _info("H1", components=[{"id": "c", "image": "i", "max_instances": 2}]).model_dump(mode="json")
    data["future"] = {"x": 1}
    data["capacity"]["gpus"] = 2
    data["components"][0]["future_field"] = 1
    v = LatticeView()
    assert v.apply_event(_event(EventType.HOST_HEARTBEAT, data), now=0)
    assert v.snapshot().hosts["H1"].components["c"].max_instances == 2
    assert not v.apply_event(_event(EventType.HOST_HEARTBEAT, {"id": 3}), now=0)


def test_failure_book_remembers_restarts_for_a_while_and_failed_start_hosts():
    from trellis.wadm.commands import StartProvider
    from trellis.wadm.controller.failures import FailureBook

    book = FailureBook(restart_memory_s=60)
    book.restarted("app", "p", "H1", now=0.0)
    assert book.restarted_hosts("app", now=30.0) == {"p": frozenset({"H1"})}
    assert book.restarted_hosts("other", now=30.0) == {}
    assert book.restarted_hosts("app", now=61.0) == {}  # forgotten: a new trouble restarts in place again
    book.failed(StartProvider(host_id="H2", provider_id="p", image="builtin:x", app="app"), "boom", now=0.0)
    assert book.avoid("app") == {"p": frozenset({"H2"})}


def test_quiet_apps_resyncs_are_spread_over_a_quarter_of_the_period():
    """Apps become quiet together (every app is passed again after a view change); their safety-net
    passes come back `quiet_resync_s` later plus a random share of up to RESYNC_SPREAD of it, not in
    one burst; a tick passes a quiet app again from its own due time on."""
    from trellis.wadm.controller.controller import RESYNC_SPREAD, Controller
    from trellis.wadm.controller.settings import ControllerSettings

    ctl = Controller(ControllerSettings(quiet_resync_s=300.0))
    due = [ctl._resync_due(1000.0) for _ in range(200)]
    assert all(1300.0 <= d < 1300.0 + 300.0 * RESYNC_SPREAD for d in due)
    assert max(due) - min(due) > 300.0 * RESYNC_SPREAD / 2  # spread, not one instant
    ctl._quiet = {"a": (ctl._view_version, 1350.0), "b": (ctl._view_version, 1310.0)}
    assert not ctl._tick_wanted("b", 1309.0) and ctl._tick_wanted("b", 1310.0)
    assert not ctl._tick_wanted("a", 1349.0) and ctl._tick_wanted("a", 1350.0)
    ctl._view_version += 1  # a view change: every quiet app is passed again at once
    assert ctl._tick_wanted("a", 1001.0)
