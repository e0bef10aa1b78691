"""What the dashboard shows, kept current from the lattice and handed out as JSON snapshots.

Hosts come from heartbeats (the event feed; a first ping fills the page at once), recent
events from the feed, applications from the wadm API (every few seconds and soon after
an event that changes placements), links from the lattice store, live traffic from the
workers' traffic tap (``trellis.views.taps``) and usage per app from the hosts, when they
report it. Each change bumps :attr:`LatticeState.version`; streams wait on
:meth:`LatticeState.wait_change`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import NatsSettings, connect
from trellis.interfaces.events import Event, EventType
from trellis.views import inventory
from trellis.views.feed import HOST_LOST, HOST_RETURNED, EventFeed, summarize
from trellis.views.traffic import TrafficWatch

log = logging.getLogger("trellis.ui")

#: events kept for the page (heartbeats are never kept)
RECENT_EVENTS = 200
APPS_EVERY_S = 3.0
LINKS_EVERY_S = 5.0
USAGE_EVERY_S = 5.0
#: a lost host stays on the page (marked lost) this long
LOST_SHOWN_S = 60.0
_BUILTIN_LABELS = {"os", "arch", "hostname", "python"}
_PLACEMENT_EVENTS = {EventType.COMPONENT_SCALED, EventType.COMPONENT_SCALE_FAILED, EventType.PROVIDER_STARTED,
                     EventType.PROVIDER_STOPPED, EventType.PROVIDER_START_FAILED, EventType.HEALTH_CHECK_FAILED,
                     EventType.HEALTH_CHECK_PASSED, EventType.HOST_STOPPED, HOST_LOST, HOST_RETURNED}
_BAD = {"host_lost", "host_stopped", "component_scale_failed", "provider_start_failed", "health_check_failed"}


def _level(ev: Event) -> str:
    if ev.type in _BAD or "fail" in ev.type or str(ev.data.get("status", "")) in ("failed", "degraded"):
        return "bad"
    if ev.type in ("host_started", "host_returned", "provider_started", "health_check_passed"):
        return "good"
    return "info"


class LatticeState:
    def __init__(self, nats: NatsSettings, lattice: str) -> None:
        self.nats = nats
        self.lattice = lattice
        self.version = 0
        self.connected = False
        self.error = ""
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_EVENTS)
        self.apps: list[dict[str, Any]] = []
        self.apps_note = ""
        self.links: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self._lost_at: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._apps_due = asyncio.Event()
        self._links_due = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._nc: Any = None
        self.feed: EventFeed | None = None
        self.client: LatticeClient | None = None
        self.traffic_watch = TrafficWatch(lattice)
        self.extras: list[Any] = [self.traffic_watch]  # readers that start on the connection, close with us

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._run(), name="ui-state"))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for extra in self.extras:
            await extra.close()
        if self.feed is not None:
            await self.feed.close()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    def changed(self) -> None:
        self.version += 1
        self._changed.set()

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """Return once :attr:`version` differs from ``seen`` (or the timeout passes)."""
        if self.version == seen:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                pass
        return self.version

    async def _run(self) -> None:
        # the first connect keeps trying until NATS answers (the page says so meanwhile)
        self.error = f"waiting for NATS at {self.nats.url} (is 'trellis up' or the lattice's NATS running?)"
        self.changed()
        while self._nc is None:
            try:
                self._nc = await connect(self.nats, name="trellis-ui", max_reconnect_attempts=-1,
                                         disconnected_cb=self._disconnected, reconnected_cb=self._reconnected)
            except Exception as exc:  # NATS not up yet: the page says so, and we keep trying
                self.error = f"cannot reach NATS at {self.nats.url}: {exc}"
                self.changed()
                await asyncio.sleep(2.0)
        self.connected, self.error = True, ""
        self.client = LatticeClient(self.nats, self.lattice, nc=self._nc)
        self.feed = EventFeed(self._nc, self.lattice)
        await self.feed.start()
        for extra in self.extras:
            await extra.start(self._nc)
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._follow_events(), name="ui-events"),
                        loop.create_task(self._poll(self._refresh_apps, self._apps_due, APPS_EVERY_S), name="ui-apps"),
                        loop.create_task(self._poll(self._refresh_links, self._links_due, LINKS_EVERY_S),
                                         name="ui-links"),
                        loop.create_task(self._tick(), name="ui-tick"),
                        loop.create_task(self._poll(self._refresh_usage, asyncio.Event(), USAGE_EVERY_S),
                                         name="ui-usage")]
        try:  # the page shows every host at once rather than after its next heartbeat
            self.feed.seed(await self.client.get_hosts(timeout_s=0.5))
        except Exception as exc:
            log.debug("first ping failed: %r", exc)
        self.changed()

    async def _disconnected(self) -> None:
        self.connected, self.error = False, f"lost the connection to NATS at {self.nats.url}; reconnecting"
        self.changed()

    async def _reconnected(self) -> None:
        self.connected, self.error = True, ""
        self.changed()

    async def _follow_events(self) -> None:
        assert self.feed is not None
        async for ev in self.feed.events():
            if ev.type == HOST_LOST:
                self._lost_at[str(ev.data.get("host_id"))] = time.monotonic()
            elif ev.type in (HOST_RETURNED, EventType.HOST_STARTED):
                self._lost_at.pop(str(ev.data.get("host_id") or ev.data.get("id")), None)
            if ev.type != EventType.HOST_HEARTBEAT:
                self.events.appendleft({
                    "time": ev.time, "type": ev.type, "source": self.feed.host_name(ev.source),
                    "summary": summarize(ev, self.feed.host_name), "level": _level(ev)})
            if ev.type in _PLACEMENT_EVENTS or ev.type.startswith("app"):
                self._apps_due.set()
            if ev.type.startswith("linkdef"):
                self._links_due.set()
            self.changed()

    async def _poll(self, refresh: Any, due: asyncio.Event, every_s: float) -> None:
        while True:
            try:
                await refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("%s failed: %r", refresh.__name__, exc)
            due.clear()
            try:
                await asyncio.wait_for(due.wait(), every_s)
                await asyncio.sleep(0.3)  # let a burst of events settle into one refresh
            except TimeoutError:
                pass

    async def _tick(self) -> None:
        """Once a second: the page's clocks (uptime, lost hosts) move even when nothing happens."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for hid, at in list(self._lost_at.items()):
                if now - at > LOST_SHOWN_S:
                    del self._lost_at[hid]
            self.changed()

    async def _refresh_apps(self) -> None:
        from trellis.interfaces.wadm_client import WadmClient, WadmError

        assert self.client is not None
        wadm = WadmClient(self.client, timeout_s=3.0, wait_leader_s=1.0)
        try:
            listed = await wadm.list()
        except WadmError as exc:
            self.apps, self.apps_note = [], exc.message
            self.changed()
            return
        apps = []
        for summary in listed.apps:
            row: dict[str, Any] = summary.model_dump(mode="json")
            try:
                st = await wadm.status(summary.name)
                row.update(status=st.status, message=st.message, version=st.version,
                           components=[c.model_dump(mode="json") for c in st.components],
                           links=[lk.model_dump(mode="json") for lk in st.links])
            except WadmError as exc:
                row.update(components=[], links=[], message=exc.message)
            apps.append(row)
        self.apps, self.apps_note = apps, ""
        self.changed()

    async def _refresh_usage(self) -> None:
        """Usage, energy and carbon per app, as `trellis app usage` computes them, when the hosts report it."""
        assert self.client is not None
        try:
            from trellis.interfaces.carbon import CarbonModel
            from trellis.views.usage import app_usage
        except ImportError:
            self.usage = {"note": "this Trellis does not report usage"}
            return
        if not hasattr(self.client, "get_usage") or not self.apps:
            return
        hosts = await self.client.get_usage(timeout_s=3.0)
        model = CarbonModel.from_env()
        apps = {}
        for app in self.apps:
            report = app_usage(hosts, app["name"], model)
            if report["components"] or report["providers"]:
                apps[app["name"]] = report["total"]
        self.usage = {"apps": apps, "model": model.describe(), "hosts": len(hosts)}
        self.changed()

    async def _refresh_links(self) -> None:
        assert self.client is not None
        self.links = [lk.model_dump(mode="json") for lk in await self.client.get_links()]
        self.changed()

    # --- the snapshot --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        feed = self.feed
        seen = list(feed.hosts.values()) if feed else []
        now = time.monotonic()
        hosts = []
        for s in sorted(seen, key=lambda s: (s.info.name, s.info.id)):
            if s.lost and s.info.id not in self._lost_at:
                continue
            h = s.info
            cap = h.capacity
            hosts.append({
                "id": h.id, "name": h.name, "version": h.version, "lost": s.lost,
                "silent_s": round(now - s.last_seen, 1),
                "labels": {k: v for k, v in sorted(h.labels.items()) if k not in _BUILTIN_LABELS},
                "system": {k: v for k, v in sorted(h.labels.items()) if k in _BUILTIN_LABELS},
                "uptime_s": h.uptime_s, "cpus": cap.cpus, "load_1m": cap.load_1m, "workers": cap.workers,
                "memory_total": cap.memory_total_bytes, "memory_available": cap.memory_available_bytes,
                "instances_max": cap.instances_max,
                "components": [{"id": c.id, "max_instances": c.max_instances,
                                "app": c.annotations.get(inventory.APP_ANNOTATION)} for c in h.components],
                "providers": [{"id": p.id, "status": p.status,
                               "app": p.annotations.get(inventory.APP_ANNOTATION)} for p in h.providers],
            })
        live = [s.info for s in seen if not s.lost]
        comps = [r.model_dump(mode="json") for r in inventory.components(live)]
        provs = [r.model_dump(mode="json") for r in inventory.providers(live)]
        return {
            "lattice": self.lattice, "nats_url": self.nats.url, "connected": self.connected, "error": self.error,
            "version": self.version, "hosts": hosts, "components": comps, "providers": provs,
            "apps": self.apps, "apps_note": self.apps_note, "links": self.links,
            "traffic": self.traffic_watch.summary(), "usage": self.usage, "events": list(self.events)[:60],
        }
