"""The views' pure parts: abbreviations, latency percentiles, the traffic window, event lines."""

from __future__ import annotations

from trellis.interfaces.control import Capacity, ComponentDescription, HostInfo, ProviderDescription
from trellis.interfaces.events import Event
from trellis.interfaces.taps import LATENCY_BOUNDS_MS, ComponentTraffic, TrafficReport, abbreviate, percentile_ms
from trellis.views import inventory
from trellis.views.feed import summarize
from trellis.views.traffic import HISTORY_S, WINDOW_S, TrafficWatch


def test_abbreviate_keeps_it_short_and_readable():
    assert abbreviate([2, 40]) == "[2,40]"
    assert abbreviate({"host": b"localhost:8080", "blob": bytes(range(200))}) == \
        '{"host":"localhost:8080","blob":"<200 bytes>"}'
    long = abbreviate(["x" * 1000])
    assert len(long) == 160 and long.endswith("…")
    many = abbreviate(list(range(100)), limit=1000)
    assert many.endswith('"… 84 more"]')
    assert abbreviate(object()).startswith('"<object')


def test_percentiles_from_the_histogram():
    t = ComponentTraffic()
    assert percentile_ms(t.latency, 0.5) is None
    for _ in range(98):
        t.add(3.0, True)  # bucket (2.5, 5]
    t.add(400.0, True)
    t.add(400.0, False)  # bucket (250, 500]
    p50, p99 = percentile_ms(t.latency, 0.5), percentile_ms(t.latency, 0.99)
    assert p50 is not None and 2.5 <= p50 <= 5
    assert p99 is not None and 250 <= p99 <= 500
    assert (t.calls, t.errors) == (100, 1)
    huge = ComponentTraffic()
    huge.add(10 * LATENCY_BOUNDS_MS[-1], True)  # past the last bound: still counted
    p50 = percentile_ms(huge.latency, 0.5)
    assert p50 is not None and p50 > LATENCY_BOUNDS_MS[-1]


def test_traffic_window_merges_workers_and_seconds():
    w = TrafficWatch("t")

    def report(worker: int, calls: int, errors: int = 0) -> TrafficReport:
        c = ComponentTraffic(app="shop")
        for i in range(calls):
            c.add(1.0, i >= errors)
        return TrafficReport(host="H", worker=worker, interval_s=1.0, components={"cart": c})

    for sec in range(100, 100 + WINDOW_S):  # two workers, 10 calls a second each, 1 error a second
        w.add(report(0, 10, errors=1), sec)
        w.add(report(1, 10), sec)
    s = w.summary(now=100 + WINDOW_S)["cart"]
    assert s["rps"] == 20 and s["errors_per_s"] == 1 and s["app"] == "shop" and s["total"] == 200
    assert 0.5 <= s["p50_ms"] <= 1 and len(s["history"]) == HISTORY_S and s["history"][-1] == 20
    # the first seconds after the watch began count only the seconds watched
    fresh = TrafficWatch("t")
    fresh.add(report(0, 30), 500)
    assert fresh.summary(now=501)["cart"]["rps"] == 30
    # quiet since: the window empties, the total stays
    quiet = w.summary(now=100 + 3 * WINDOW_S)["cart"]
    assert quiet["rps"] == 0 and quiet["p99_ms"] is None and quiet["total"] == 200


def _host(hid: str, name: str, comps: dict[str, int], provs: dict[str, str]) -> HostInfo:
    return HostInfo(
        id=hid, name=name, lattice="t", labels={}, version="0", uptime_s=1, started_at="",
        capacity=Capacity(cpus=1, memory_total_bytes=1, memory_available_bytes=1, load_1m=0),
        components=[ComponentDescription(id=c, image=f"{c}.wasm", max_instances=n,
                                         annotations={"trellis.app": "shop"}) for c, n in comps.items()],
        providers=[ProviderDescription(id=p, image="builtin:x", status=st) for p, st in provs.items()])


def test_inventory_folds_hosts():
    hosts = [_host("A", "a", {"cart": 2}, {"kv": "running"}),
             _host("B", "b", {"cart": 3, "pay": 1}, {"kv": "unhealthy"})]
    comps = {r.id: r for r in inventory.components(hosts)}
    assert comps["cart"].max_instances == 5 and [p.host_name for p in comps["cart"].hosts] == ["a", "b"]
    assert comps["cart"].app == "shop" and comps["pay"].max_instances == 1
    (kv,) = inventory.providers(hosts)
    assert kv.status == "mixed (running, unhealthy)" and [p.status for p in kv.hosts] == ["running", "unhealthy"]


def test_event_lines():
    names = {"H1": "alpha"}.get
    ev = Event.new("component_scaled", "H1", {"host_id": "H1", "component_id": "cart", "max_instances": 4,
                                              "annotations": {"trellis.app": "shop"}})
    assert summarize(ev, lambda h: names(h, h)) == "component cart max_instances=4 on alpha (app shop)"
    ev = Event.new("health_check_failed", "H1", {"host_id": "H1", "provider_id": "http", "message": "port in use"})
    assert summarize(ev) == "provider http unhealthy on H1: port in use"
    ev = Event.new("app_status_changed", "wadm", {"name": "shop", "version": "v2", "status": "degraded",
                                                  "message": "kv unhealthy on alpha"})
    assert summarize(ev) == "app shop v2 degraded: kv unhealthy on alpha"
    ev = Event.new("something_new", "x", {"app": "shop", "status": "ok"})
    assert summarize(ev) == "app=shop status=ok"
