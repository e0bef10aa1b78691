"""The lattice's event feed, as `trellis events` and the dashboard follow it.

Every event published on ``trellis.<lattice>.evt.>`` (CloudEvents JSON, see
``interfaces/events.py``) comes through as it is. A host that is killed says nothing,
so the feed also watches heartbeats: a host silent for three of its heartbeat intervals
is reported once as a ``host_lost`` event whose source is the watcher (as wadm decides
a host is gone), and its next heartbeat as ``host_returned``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from trellis.interfaces import subjects
from trellis.interfaces.control import HostBeat, HostInfo
from trellis.interfaces.events import Event, EventType

HOST_LOST = "host_lost"
HOST_RETURNED = "host_returned"
#: heartbeats a host may miss before the feed reports it lost
MISSED_BEATS = 3
#: the watcher's own name as the source of the events it derives
WATCHER = "trellis-watcher"


@dataclass
class SeenHost:
    info: HostInfo
    last_seen: float
    lost: bool = False

    @property
    def silence_limit_s(self) -> float:
        return MISSED_BEATS * max(self.info.heartbeat_interval_s, 0.1)


class EventFeed:
    """Subscribes to a lattice's events; iterate :meth:`events` for them in arrival order.

    ``hosts`` holds the live hosts known from ``host_started``/``host_heartbeat``,
    so a consumer can name hosts and show them without asking the lattice.
    """

    def __init__(self, nc: Client, lattice: str) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.hosts: dict[str, SeenHost] = {}
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)
        self._sub: Any = None
        self._check: asyncio.Task[None] | None = None
        self._asking: dict[str, asyncio.Task[None]] = {}  # host id -> its inventory being asked for
        self.dropped = 0

    async def start(self) -> None:
        """Subscribe (and flush, so nothing published after this returns is missed)."""
        self._sub = await self.nc.subscribe(subjects.events_wildcard(self.lattice), cb=self._on_msg)
        await self.nc.flush()
        self._check = asyncio.get_running_loop().create_task(self._watch_silence(), name="feed-silence")

    async def close(self) -> None:
        for task in list(self._asking.values()):
            task.cancel()
        await asyncio.gather(*self._asking.values(), return_exceptions=True)
        self._asking.clear()
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)
            self._check = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be gone already
                pass
            self._sub = None

    async def __aenter__(self) -> EventFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()

    def seed(self, hosts: list[HostInfo]) -> None:
        """Hosts known from a ping, so the first events name them before their next heartbeat."""
        for h in hosts:
            if h.id not in self.hosts:
                self.hosts[h.id] = SeenHost(h, time.monotonic())

    def host_name(self, host_id: str) -> str:
        seen = self.hosts.get(host_id)
        return seen.info.name if seen else host_id

    # --- internals -------------------------------------------------------------------

    def _put(self, ev: Event) -> None:
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:  # a consumer that stopped reading: keep the newest
            self.dropped += 1
            self._queue.get_nowait()
            self._queue.put_nowait(ev)

    async def _on_msg(self, msg: Any) -> None:
        try:
            ev = Event.decode(msg.data)
        except ValueError:
            return
        self._track(ev)
        self._put(ev)

    def _track(self, ev: Event) -> None:
        now = time.monotonic()
        if ev.type == EventType.HOST_HEARTBEAT and HostBeat.is_light(ev.data):
            self._beat(ev.data, now)
        elif ev.type in (EventType.HOST_STARTED, EventType.HOST_HEARTBEAT):
            try:
                info = HostInfo.model_validate(ev.data)
            except ValueError:
                return
            seen = self.hosts.get(info.id)
            if seen is None:
                self.hosts[info.id] = SeenHost(info, now)
                return
            if seen.lost:
                self._put(_derived(HOST_RETURNED, {"host_id": info.id, "name": info.name}))
            seen.info, seen.last_seen, seen.lost = info, now, False
        elif ev.type == EventType.HOST_STOPPED:
            self.hosts.pop(str(ev.data.get("host_id") or ev.source), None)
        elif ev.type == EventType.LABELS_CHANGED:
            seen = self.hosts.get(str(ev.data.get("host_id") or ev.source))
            if seen is not None and isinstance(ev.data.get("labels"), dict):
                seen.info.labels = dict(ev.data["labels"])

    def _beat(self, data: dict[str, Any], now: float) -> None:
        """A light heartbeat: alive, its uptime and capacity; an inventory we do not hold is asked for."""
        try:
            beat = HostBeat.model_validate(data)
        except ValueError:
            return
        seen = self.hosts.get(beat.id)
        if (seen is None or seen.info.inventory != beat.inventory) and beat.id not in self._asking:
            self._asking[beat.id] = asyncio.get_running_loop().create_task(self._ask(beat.id))
        if seen is None:
            return
        if seen.lost:
            self._put(_derived(HOST_RETURNED, {"host_id": beat.id, "name": seen.info.name}))
        seen.last_seen, seen.lost = now, False
        seen.info.uptime_s = beat.uptime_s
        if beat.capacity is not None:
            seen.info.capacity = beat.capacity

    async def _ask(self, host_id: str) -> None:
        from trellis.interfaces.client import LatticeClient

        try:
            info = await LatticeClient(lattice=self.lattice, nc=self.nc).get_inventory(host_id)
        except Exception:  # gone or slow: its next heartbeat asks again
            return
        finally:
            self._asking.pop(host_id, None)
        seen = self.hosts.get(info.id)
        if seen is None:
            self.hosts[info.id] = SeenHost(info, time.monotonic())
        else:
            seen.info = info

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for hid, seen in list(self.hosts.items()):
                silent = now - seen.last_seen
                if not seen.lost and silent > seen.silence_limit_s:
                    seen.lost = True
                    self._put(_derived(HOST_LOST, {
                        "host_id": hid, "name": seen.info.name, "silent_s": round(silent, 1),
                        "reason": f"no heartbeat for {silent:.1f}s"}))
                elif seen.lost and silent > 60:  # gone for good: forget it
                    del self.hosts[hid]

    def live_hosts(self) -> list[HostInfo]:
        return sorted((s.info for s in self.hosts.values() if not s.lost), key=lambda h: (h.name, h.id))


def _derived(type_: str, data: dict[str, Any]) -> Event:
    return Event.new(type_, source=WATCHER, data=data)


# --- one line per event, for people ------------------------------------------------------


def _who(data: dict[str, Any], *keys: str) -> str:
    for k in keys:
        if data.get(k):
            return str(data[k])
    return ""


def summarize(ev: Event, host_name: Any = None) -> str:
    """What an event says, in one line (``host_name(id)`` names hosts when known)."""
    d = ev.data
    name = host_name or (lambda hid: hid)
    on = f" on {name(d['host_id'])}" if d.get("host_id") else ""
    t = ev.type
    if t == EventType.HOST_HEARTBEAT and HostBeat.is_light(d):
        return f"host {d.get('name') or name(d.get('id', ev.source))} is alive (inventory unchanged)"
    if t in (EventType.HOST_STARTED, EventType.HOST_HEARTBEAT):
        labels = ",".join(f"{k}={v}" for k, v in sorted((d.get("labels") or {}).items())
                          if k not in ("os", "arch", "hostname", "python"))
        cap = d.get("capacity") or {}
        return (f"host {d.get('name', ev.source)} ({str(d.get('id', ev.source))[:10]}…) "
                f"cpus={cap.get('cpus', '?')} components={len(d.get('components') or [])} "
                f"providers={len(d.get('providers') or [])}" + (f" labels {labels}" if labels else ""))
    if t == EventType.HOST_STOPPED:
        return f"host {name(d.get('host_id') or ev.source)} stopped" + (f": {d['reason']}" if d.get("reason") else "")
    if t in (HOST_LOST, HOST_RETURNED):
        return f"host {d.get('name') or d.get('host_id')} " + (
            f"lost: {d.get('reason')}" if t == HOST_LOST else "is back")
    if t == EventType.LABELS_CHANGED:
        labels = ",".join(f"{k}={v}" for k, v in sorted((d.get("labels") or {}).items())
                          if k not in ("os", "arch", "hostname", "python"))
        return f"labels of {name(d.get('host_id') or ev.source)}: {labels or '(none)'}"
    if t == EventType.COMPONENT_SCALED:
        app = (d.get("annotations") or {}).get("trellis.app")
        n = d.get("max_instances", 0)
        what = "stopped" if not n else f"max_instances={n}"
        return f"component {d.get('component_id')} {what}{on}" + (f" (app {app})" if app else "")
    if t == EventType.COMPONENT_SCALE_FAILED:
        return f"component {d.get('component_id')} {d.get('operation', '')} failed{on}: {d.get('error')}"
    if t.startswith("provider_") or t.startswith("health_check"):
        pid = d.get("provider_id", "")
        verb = {EventType.PROVIDER_STARTED: "started", EventType.PROVIDER_STOPPED: "stopped",
                EventType.PROVIDER_START_FAILED: "failed to start",
                EventType.HEALTH_CHECK_PASSED: "healthy", EventType.HEALTH_CHECK_FAILED: "unhealthy"}.get(t, t)
        why = _who(d, "error", "message", "reason")
        return f"provider {pid} {verb}{on}" + (f": {why}" if why else "")
    if t in (EventType.LINKDEF_SET, EventType.LINKDEF_DELETED):
        ifaces = ",".join(d.get("interfaces") or [])
        verb = "set" if t == EventType.LINKDEF_SET else "deleted"
        return (f"link {verb}: {d.get('source_id')} -> {d.get('target')} "
                f"{d.get('wit_namespace')}:{d.get('wit_package')}/{{{ifaces}}} ({d.get('name', 'default')})")
    if t in (EventType.CONFIG_SET, EventType.CONFIG_DELETED):
        return f"config {d.get('config_name')} {'set' if t == EventType.CONFIG_SET else 'deleted'}"
    if t == "app_status_changed":
        version = f" {d['version']}" if d.get("version") else ""
        return f"app {d.get('name')}{version} {d.get('status')}" + (f": {d['message']}" if d.get("message") else "")
    # anything newer: the fields people look for first
    parts = []
    for k in ("app", "name", "component_id", "provider_id", "status", "state", "message", "error", "reason"):
        if d.get(k) not in (None, "", [], {}):
            parts.append(f"{k}={d[k]}")
    return " ".join(parts) + on if parts else (on.strip() or "")


def local_time(iso: str) -> str:
    """An event's ISO time as local HH:MM:SS.mmm (the ISO text when it cannot be read)."""
    try:
        when = _dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
