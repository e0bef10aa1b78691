"""The observer: keeps a `LatticeView` current from the lattice, and tells waiters.

Sources, all folded into one view on the event loop (so a snapshot is never half
updated):

* ``trellis.<lattice>.evt.>``: one subscription, so events from one host are
  applied in the order the host sent them (a heartbeat never overtakes the
  outcome event it follows);
* an initial ping of every host (``LatticeClient.get_hosts``) at start, so a
  fresh controller knows the lattice before its first pass;
* the link and config buckets (``LatticeStore.watch``) and the ownership records
  (``AppStore.watch_owners``).

The executor waits on outcomes through `expect` (an event matching some fields)
and `wait_until` (a predicate on the view); both are resolved *after* the view
has applied the change, so once a command's wait returns, the next snapshot
includes its effect. Waits on a host fail as soon as that host is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from trellis.interfaces import subjects
from trellis.interfaces.cancel import stop_if_cancelled
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.store import ConfigChange, LatticeStore, LinkChange, Synced
from trellis.kit.service import TaskGroup

from ..observed import StatePin
from .app_store import AppStore, OwnerChange, StoreSynced, store_transient
from .view import LatticeView

log = logging.getLogger(__name__)


async def essential(coro: Coroutine[Any, Any, None], what: str,
                    on_fatal: Callable[[str, BaseException], None]) -> None:
    """Run a task the controller cannot do without; if it ends or fails, report it as fatal."""
    try:
        await coro
        raise RuntimeError(f"{what} ended")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("%s failed: %r", what, exc)
        on_fatal(what, exc)


def state_pin(data: dict[str, Any] | None) -> StatePin | None:
    """A state pin record as the view keeps it (None: deleted or unreadable)."""
    if not isinstance(data, dict) or not data.get("state_id"):
        return None
    labels = data.get("labels")
    return StatePin(str(data["state_id"]), str(data.get("host_id") or ""), str(data.get("host_name") or ""),
                    {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {})


class HostGone(Exception):
    """The host a wait was about went away."""


@dataclass
class _Expectation:
    match: dict[str, Any]
    ok: tuple[str, ...]
    failed: tuple[str, ...]
    host_id: str | None
    future: asyncio.Future[Event] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def matches(self, ev: Event) -> bool:
        return ev.type in self.ok + self.failed and all(ev.data.get(k) == v for k, v in self.match.items())


@dataclass
class _Condition:
    predicate: Callable[[LatticeView], bool]
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Observer:
    def __init__(self, nc: Client, lattice: str, client: LatticeClient, store: LatticeStore, apps: AppStore,
                 tasks: TaskGroup, *, expiry_intervals: float = 3.0, ping_timeout_s: float = 1.0,
                 on_change: Callable[[str], None] | None = None,
                 on_fatal: Callable[[str, BaseException], None] | None = None, store_retry_s: float = 0.0) -> None:
        self.nc = nc
        self.lattice = lattice
        self.client = client
        self.store = store
        self.apps = apps
        self.tasks = tasks
        self.view = LatticeView(expiry_intervals=expiry_intervals)
        self.ping_timeout_s = ping_timeout_s
        self.on_change = on_change or (lambda why: None)
        self.on_fatal = on_fatal or (lambda what, exc: None)
        self.store_retry_s = store_retry_s
        """How long the link and config watch is retried while it cannot start (JetStream unavailable)."""
        self._expectations: list[_Expectation] = []
        self._conditions: list[_Condition] = []
        self._synced: set[str] = set()
        self._ready = asyncio.Event()
        self._sub: Any = None
        self._connected = True
        self.events_seen = 0
        self._asking: set[str] = set()  # hosts asked for their inventory, not answered yet
        self.inventories_asked = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe first (so nothing after the ping is missed), then ping, then watch the stores."""
        self._sub = await self.nc.subscribe(subjects.events_wildcard(self.lattice), cb=self._on_msg)
        await self.nc.flush()
        for info in await self.client.get_hosts(timeout_s=self.ping_timeout_s):
            self.view.host_seen(info, self._now())
        log.info("observer: %d host(s) answered the initial ping", len(self.view.hosts))
        self.tasks.spawn(essential(self._watch_store(), "the link and config watch", self.on_fatal),
                         "watch-links-config")
        self.tasks.spawn(essential(self._watch_owners(), "the owner watch", self.on_fatal), "watch-owners")

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
        for e in self._expectations:
            if not e.future.done():
                e.future.cancel()
        for c in self._conditions:
            if not c.future.done():
                c.future.cancel()

    # --- connection loss ----------------------------------------------------------------

    def disconnected(self) -> None:
        """NATS is gone: the view goes stale (events are missed), so stop acting, and stop
        expiring hosts (their silence is ours, not theirs)."""
        if self._ready.is_set():
            log.warning("observer: disconnected from NATS; not acting until the view is fresh again")
        self._connected = False
        self._ready.clear()

    def reconnected(self) -> None:
        """Back: give every host a full expiry window to be heard from again, ping them, and
        act again once the window has passed (the store watches re-read by themselves)."""
        self._connected = True
        now = self._now()
        for h in self.view.hosts.values():
            h.last_seen = now
        self.tasks.spawn(self._resync(), "resync")

    async def _resync(self) -> None:
        loop = asyncio.get_running_loop()
        window = min(5.0, max([h.heartbeat_interval_s for h in self.view.hosts.values()] + [1.0])
                     * self.view.expiry_intervals)
        until = loop.time() + window
        for info in await self.client.get_hosts(timeout_s=self.ping_timeout_s):
            self.view.host_seen(info, self._now())
        await asyncio.sleep(max(0.0, until - loop.time()))
        if self._connected and {"links", "config", "owners"} <= self._synced:
            log.info("observer: view fresh again after a reconnect (%d host(s))", len(self.view.hosts))
            self._ready.set()
            self._changed("resynced")

    def _mark_synced(self, what: str) -> None:
        self._synced.add(what)
        if {"links", "config", "owners"} <= self._synced and not self._ready.is_set():
            log.info("observer: links, configs and owners loaded")
            self._ready.set()
            self._changed("synced")

    # --- sources -----------------------------------------------------------------------

    async def _on_msg(self, msg: Msg) -> None:
        try:
            ev = Event.decode(msg.data)
        except ValueError:
            return
        self.events_seen += 1
        try:
            changed = self.view.apply_event(ev, self._now())
        except (ValueError, TypeError) as exc:  # malformed data in an event: skip it, keep observing
            log.warning("ignoring malformed %s event from %s: %r", ev.type, ev.source, exc)
            return
        host_id = ev.data.get("host_id") or (ev.data.get("id") if ev.type in (
            EventType.HOST_STARTED, EventType.HOST_HEARTBEAT) else None)
        if ev.type == EventType.HOST_STOPPED and host_id:
            self._fail_host(str(host_id), "host stopped")
        for e in list(self._expectations):
            if not e.future.done() and e.matches(ev):
                e.future.set_result(ev)
        self._expectations = [e for e in self._expectations if not e.future.done()]
        if changed:
            self._changed(ev.type)
        if self.view.stale:
            self._ask_stale()

    def _ask_stale(self) -> None:
        """Ask each host whose light heartbeat named an inventory we do not hold for its inventory
        (one request per host at a time; the next light heartbeat asks again if this one fails)."""
        for host_id in sorted(self.view.stale - self._asking):
            self._asking.add(host_id)
            self.tasks.spawn(self._ask_inventory(host_id), f"inventory-{host_id[:8]}")

    async def _ask_inventory(self, host_id: str) -> None:
        try:
            self.inventories_asked += 1
            info = await self.client.get_inventory(host_id)
        except Exception as exc:  # gone, or slow: its next heartbeat says more
            log.debug("inventory of %s not read: %r", host_id, exc)
            return
        finally:
            self._asking.discard(host_id)
        if info.id == host_id and self.view.host_seen(info, self._now()):
            self._changed("inventory")

    async def _watch_store(self) -> None:
        """Links and configs into the view. Until both are loaded, a watch that fails to start
        (JetStream unavailable: 503 or no answer while a cluster elects a leader) is started
        again with backoff for up to ``store_retry_s``, and what a failed start put in the view
        is taken out again first; once loaded, the watches resubscribe by themselves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store_retry_s
        delay = 0.1
        while True:
            links: set[Any] = set()
            configs: set[str] = set()
            try:
                async for change in self.store.watch():
                    stop_if_cancelled()  # (the watch waits with wait_for, which can swallow our cancel)
                    if isinstance(change, Synced):
                        self._mark_synced(change.bucket)
                        continue
                    loading = not {"links", "config"} <= self._synced
                    if isinstance(change, LinkChange):
                        if loading and change.kind == "put":
                            links.add(change.link.identity)
                        changed = (self.view.put_link(change.link) if change.kind == "put"
                                   else self.view.delete_link(change.link.identity))
                    elif isinstance(change, ConfigChange):
                        if loading and change.kind == "put":
                            configs.add(change.name)
                        changed = (self.view.put_config(change.name, change.values) if change.kind == "put"
                                   else self.view.delete_config(change.name))
                    else:
                        continue
                    if changed:
                        self._changed("store")
                return
            except Exception as exc:
                if {"links", "config"} <= self._synced or not store_transient(exc) \
                        or loop.time() + delay > deadline:
                    raise
                log.warning("observer: the link and config watch could not start (%r); retrying in %.1fs",
                            exc, delay)
                self._synced -= {"links", "config"}
                for identity in links:
                    self.view.delete_link(identity)
                for name in configs:
                    self.view.delete_config(name)
            await asyncio.sleep(delay)  # backoff: JetStream does not say when it is back
            delay = min(delay * 2, 2.0)

    async def _watch_owners(self) -> None:
        async for change in self.apps.watch_owners():
            stop_if_cancelled()
            if isinstance(change, StoreSynced):
                self._mark_synced("owners")
                continue
            assert isinstance(change, OwnerChange)
            if change.kind == "link":
                changed = self.view.set_link_owner(change.key, change.app)
            elif change.kind == "state":
                changed = self.view.set_pin(change.key, state_pin(change.data))
            else:
                changed = self.view.set_config_owner(change.key, change.app)
            if changed:
                self._changed("owners")

    def expire_hosts(self) -> list[str]:
        if not self._connected:
            return []
        gone = self.view.expire(self._now())
        for host_id in gone:
            self._fail_host(host_id, "host stopped sending heartbeats")
        if gone:
            self._changed("host expired")
        return gone

    # --- waiting -----------------------------------------------------------------------

    def _changed(self, why: str) -> None:
        for c in list(self._conditions):
            if c.future.done():
                continue
            try:
                if c.predicate(self.view):
                    c.future.set_result(None)
            except Exception as exc:
                c.future.set_exception(exc)
        self._conditions = [c for c in self._conditions if not c.future.done()]
        self.on_change(why)

    def _fail_host(self, host_id: str, why: str) -> None:
        for e in self._expectations:
            if e.host_id == host_id and not e.future.done():
                e.future.set_exception(HostGone(f"host {host_id} is gone ({why})"))

    def expect(self, match: dict[str, Any], ok: Iterable[str], failed: Iterable[str] = (),
               host_id: str | None = None) -> asyncio.Future[Event]:
        """A future for the next event of types `ok`/`failed` whose data has the `match` fields.

        Register it *before* sending the request whose outcome it waits for.
        """
        e = _Expectation(dict(match), tuple(ok), tuple(failed), host_id)
        if host_id is not None and host_id not in self.view.hosts:
            e.future.set_exception(HostGone(f"host {host_id} is not in the lattice"))
        self._expectations.append(e)
        return e.future

    def heartbeat_interval(self, host_id: str) -> float:
        """How often ``host_id`` says it heartbeats (1 s for a host not in view)."""
        entry = self.view.hosts.get(host_id)
        return entry.heartbeat_interval_s if entry else 1.0

    def forget(self, future: asyncio.Future[Any]) -> None:
        """Stop waiting on an `expect` future (its outcome, if any, is dropped)."""
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # mark a HostGone as seen
        self._expectations = [e for e in self._expectations if e.future is not future]

    async def wait_until(self, predicate: Callable[[LatticeView], bool], timeout_s: float) -> None:
        """Return once `predicate(view)` holds (checked now and after every change)."""
        if predicate(self.view):
            return
        c = _Condition(predicate)
        self._conditions.append(c)
        try:
            await asyncio.wait_for(asyncio.shield(c.future), timeout_s)
        finally:
            if not c.future.done():
                c.future.cancel()
            self._conditions = [x for x in self._conditions if x is not c]
