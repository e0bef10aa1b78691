"""The wadm controller: keeps every deployed application the way its manifest says.

Parts (each in its own module):

* `Observer` keeps a `LatticeView` of hosts, placements, links, configs and owners;
* the scalers (`trellis.wadm.scaler`, pure) compare a manifest with a snapshot of that view
  and return commands;
* `Executor` applies one pass's commands and waits for their outcomes;
* `Lease` decides which of several controllers acts;
* `WadmApi` answers the API (leader only); `AppStore` keeps manifests in KV, and
  `AppMemory` holds all of them (records and manifests) in every controller, from a
  watch of the bucket, so a new leader acts at once from memory.

Reconciliation is level-triggered: one `AppWorker` per application runs a pass
whenever it is woken, which happens every ``tick_s`` and at once after any
relevant change (a host joining or going, something starting or stopping, a
link or config changing, a new version deployed). A pass takes a fresh snapshot,
so no pass depends on having seen every event. A worker runs one pass at a time
and the executor returns only once the pass's effects are in the view, so the
next pass never repeats or undoes them. Applications are independent: a slow
start in one does not hold up another.

Anything the lattice still holds for an application that is not deployed
(placements tagged ``trellis.app=<name>``, links and configs it owns) is
removed, pass after pass, until nothing is left: this is how undeploy, delete
``--undeploy`` and a controller crash in the middle of either all end the same.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import uuid
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from trellis.interfaces import subjects, tracing
from trellis.interfaces.cancel import stop_if_cancelled
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import connect, goodbye
from trellis.interfaces.control import CtlReply
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.policy import PolicyClient
from trellis.interfaces.store import LatticeStore, StoreSettings
from trellis.interfaces.wadm_api import AppStatusReply, ControllerInfo, Role
from trellis.kit.service import Service
from trellis.kit.version import __version__
from trellis.signing.secrets import NKey

from ..keyholder import Keyholder
from ..manifest import Manifest
from ..metrics import WadmMetrics
from ..observed import Observed
from ..scaler import AppState, AppStatus, plan, undeploy
from .api import WadmApi
from .app_store import AppStore, ManifestChange, RecordChange, StoreSynced, retry_transient, store_transient
from .executor import Executor
from .lease import Lease
from .memory import AppMemory
from .observer import Observer, essential
from .records import AppRecord, now_iso
from .settings import ControllerSettings
from .status import deployed_status, undeployed_status

log = logging.getLogger(__name__)

#: a pass's plan of its app's status: the view and the shared apps it planned against, and the status
Planned = tuple[Observed, dict[str, Manifest], AppStatus]

#: the longest housekeeping sleeps without a deadline (a safety net: every deadline it knows wakes it)
HOUSEKEEPING_MAX_S = 5.0
#: a quiet app's resync comes `quiet_resync_s` after its quiet pass plus up to this share of it (`_resync_due`)
RESYNC_SPREAD = 0.25


class AppWorker:
    """Runs the passes of one application, one at a time, whenever woken."""

    def __init__(self, ctl: Controller, name: str) -> None:
        self.ctl = ctl
        self.name = name
        self.wake = asyncio.Event()
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            stop_if_cancelled()
            await self.wake.wait()
            self.wake.clear()
            if not self.ctl.may_act():
                continue
            self.busy = True
            try:
                await self.ctl.reconcile_app(self.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pass for %s failed", self.name)
                await asyncio.sleep(self.ctl.settings.backoff_base_s)
            finally:
                self.busy = False


class Controller(Service):
    name = "wadm"

    def __init__(self, settings: ControllerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.lattice = subjects.check_lattice(settings.lattice)
        self.id = settings.controller_id or f"wadm-{uuid.uuid4().hex[:8]}"
        self.started_at = now_iso()
        self.memory = AppMemory()
        self.records: dict[str, AppRecord] = self.memory.records
        """Every application's record, as last seen (`memory`)."""
        self.last_pass: dict[str, str] = {}
        self._announced: dict[str, tuple[str | None, str, str]] = {}
        """The last status published per app (``app_status_changed``)."""
        self.workers: dict[str, AppWorker] = {}
        self._records_synced = asyncio.Event()
        self._passes = itertools.count(1)
        #: bumped by every change of the lattice view; quiet apps: name -> (view version, when its resync
        #: is due: the quiet pass's time plus `quiet_resync_s` and a share of it, `_resync_due`)
        self._view_version = 0
        self._quiet: dict[str, tuple[int, float]] = {}
        self._housekeeping_wake = asyncio.Event()
        self._ping_sub: Any = None
        self._stopper: asyncio.Task[None] | None = None  # close() after a fatal failure outlives the tasks
        self.nc: Client
        tracing.setup_tracing("trellis-wadm")
        self.metrics = WadmMetrics(self)

    # --- lifecycle ---------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        self.nc = await connect(s.nats, name=f"trellis-{self.id}", disconnected_cb=self._on_disconnected,
                                reconnected_cb=self._on_reconnected)
        store_settings = StoreSettings.from_env()
        self.client = LatticeClient(lattice=self.lattice, nc=self.nc)
        self.store = LatticeStore(self.nc, self.lattice, source=self.id, settings=store_settings)
        # JetStream may be briefly unavailable (a cluster electing its meta leader answers 503,
        # or nothing): every bucket is opened, and every watch started, with bounded retries
        self.apps = AppStore(self.nc, self.lattice, store_settings, retry_s=s.store_retry_s)
        await self.apps.kv()
        self.lease = Lease(self.nc, self.lattice, self.id, ttl_s=s.lease_ttl_s, poll_s=s.lease_poll_s,
                           settings=store_settings, on_change=self._on_leadership, retry_s=s.store_retry_s)
        await self.lease.open()
        for what in ("links", "config"):
            await retry_transient(f"opening the {what} bucket", functools.partial(self.store.bucket, what),
                                  s.store_retry_s,
                                  retryable=store_transient)
        self.observer = Observer(self.nc, self.lattice, self.client, self.store, self.apps, self.tasks,
                                 expiry_intervals=s.host_expiry_intervals, ping_timeout_s=s.ping_timeout_s,
                                 on_change=self._on_view_change, on_fatal=self._fatal,
                                 store_retry_s=s.store_retry_s)
        self.keyholder: Keyholder | None = None
        grant_key = None
        if s.secrets_key_file:
            grant_key = NKey.load_or_create(Path(s.secrets_key_file).expanduser())
            self.keyholder = Keyholder(self.nc, self.lattice, grant_key, frozenset(), store_settings)
            await retry_transient("opening the secrets bucket", self.keyholder.start, s.store_retry_s,
                                  retryable=store_transient)
        self.policy = PolicyClient(self.nc, s.policy, {"kind": "wadm", "publicKey": self.id, "lattice": self.lattice})
        self.executor = Executor(self.client, self.store, self.apps, self.observer, s, self.may_act,
                                 grant_key=grant_key, policy=self.policy)
        self.api = WadmApi(self)
        self._ping_sub = await self.nc.subscribe(subjects.wadm_ping(self.lattice), cb=self._on_ping)
        self._metrics_sub = await self.nc.subscribe(subjects.wadm_metrics(self.lattice), cb=self.metrics.on_scrape)
        await self.observer.start()
        self.tasks.spawn(essential(self._watch_apps(), "the application watch", self._fatal), "watch-apps")
        await self._until_loaded()
        self.tasks.spawn(essential(self._housekeeping(), "housekeeping", self._fatal), "housekeeping")
        self.tasks.spawn(essential(self.lease.run(), "the lease", self._fatal), "lease")
        log.info("wadm controller %s watching lattice %s", self.id, self.lattice)

    async def _until_loaded(self) -> None:
        """Wait for the view and the records, unless a fatal failure closes us first."""
        async def loading() -> None:
            await self.observer.wait_ready()
            await self._records_synced.wait()

        loaded = asyncio.ensure_future(loading())
        closed: asyncio.Future[Any] = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait([loaded, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (loaded, closed):
                f.cancel()
            await asyncio.gather(loaded, closed, return_exceptions=True)
        if not loaded.done() or loaded.cancelled() or self._closed_event.is_set():
            raise RuntimeError(f"wadm closed while loading: {self.close_reason}")

    async def _close(self) -> None:
        if hasattr(self, "api"):
            await self.api.stop()  # no new API requests
        keyholder = getattr(self, "keyholder", None)  # (set only once started)
        if keyholder is not None:
            await keyholder.close()
        if self._ping_sub is not None:
            try:
                await self._ping_sub.unsubscribe()
            except Exception:
                pass
        if getattr(self, "_metrics_sub", None) is not None:
            try:
                await self._metrics_sub.unsubscribe()
            except Exception:
                pass
        await self.tasks.close()  # workers, lease (given up on the way out), watches, API handlers
        self.metrics.telemetry.shutdown()
        if hasattr(self, "observer"):
            await self.observer.close()
        if not hasattr(self, "nc") or self.nc.is_closed:
            return
        await goodbye(self.nc)

    async def _on_disconnected(self) -> None:
        if hasattr(self, "observer") and self.status.value == "running":
            self.observer.disconnected()
        self._housekeeping_wake.set()

    async def _on_reconnected(self) -> None:
        if hasattr(self, "observer") and self.status.value == "running":
            self.observer.reconnected()

    def _fatal(self, what: str, exc: BaseException) -> None:
        """Something the controller cannot work without failed: close (a supervisor restarts us)."""
        if self._stopper is None:
            self._stopper = asyncio.get_running_loop().create_task(
                self.close(reason=f"fatal: {what} failed: {exc!r}"))

    def may_act(self) -> bool:
        """Leader, and the view and the application records are loaded."""
        return (hasattr(self, "lease") and self.lease.held and self.observer.ready
                and self._records_synced.is_set())

    @property
    def role(self) -> Role:
        return Role.LEADER if hasattr(self, "lease") and self.lease.held else Role.FOLLOWER

    def info(self) -> ControllerInfo:
        return ControllerInfo(id=self.id, lattice=self.lattice, role=self.role,
                              leader=self.lease.leader if hasattr(self, "lease") else None,
                              leader_since=self.lease.since if self.role is Role.LEADER else None,
                              started_at=self.started_at, lease_ttl_s=self.settings.lease_ttl_s,
                              version=__version__)

    async def _on_ping(self, msg: Msg) -> None:
        if msg.reply:
            try:
                await msg.respond(CtlReply.ok(self.info()).encode())
            except Exception as exc:
                log.debug("ping reply lost: %r", exc)

    # --- triggers ----------------------------------------------------------------------

    def _on_leadership(self, held: bool) -> None:
        self._housekeeping_wake.set()
        if held:
            self.wake_all()

    def _on_view_change(self, why: str) -> None:
        self._view_version += 1
        self.wake_all()
        self._housekeeping_wake.set()  # its next deadline moved (a host came or went, apps are not quiet)

    def _view_unchanged_since_quiet(self, name: str) -> bool:
        """Whether ``name``'s last pass was quiet and the lattice view has not changed since."""
        quiet = self._quiet.get(name)
        return quiet is not None and quiet[0] == self._view_version

    def _tick_wanted(self, name: str, now: float) -> bool:
        """Whether a tick should pass ``name`` again: not when it is quiet (its last pass issued
        nothing and found it deployed) and the view has not changed since, until ``quiet_resync_s``."""
        quiet = self._quiet.get(name)
        return quiet is None or quiet[0] != self._view_version or now >= quiet[1]

    def _resync_due(self, now: float) -> float:
        """When a quiet app's safety-net pass is due: `quiet_resync_s` from now plus a random share of up
        to a quarter of it. Apps become quiet together (every app is passed again after each view change,
        a deploy's included), and without the spread their resyncs came back together, every 5 minutes:
        at N = 50 the minute that held them was the idle controller's costliest (docs/performance.md,
        i16-idle3 and i16-idle4). Spread, the passes of one round fall over 75 s, in many short wakes."""
        return now + self.settings.quiet_resync_s * (1.0 + RESYNC_SPREAD * random.random())

    def wake_all(self) -> None:
        for w in self.workers.values():
            w.wake.set()

    def record_changed(self, name: str, record: AppRecord | None, revision: int) -> None:
        """An API handler wrote a record (at ``revision``; a deletion: the one it read before), so act
        on it now (the watch confirms it later)."""
        if record is None:
            self.memory.record_deleted(name, revision)
        else:
            self.memory.set_record(name, record, revision)
        self._ensure_workers()
        worker = self.workers.get(name)
        if worker is not None:
            worker.wake.set()

    async def _watch_apps(self) -> None:
        """Keep `memory` (records and manifests) as the bucket holds them, leader or not."""
        async for change in self.apps.watch_apps():
            stop_if_cancelled()  # (the watch waits with wait_for, which can swallow our cancel)
            if isinstance(change, StoreSynced):
                log.info("%d application(s), %d manifest(s) in the store", len(self.records),
                         self.memory.manifest_count)
                self._records_synced.set()
            elif isinstance(change, ManifestChange):
                self.memory.set_manifest(change.name, change.version, change.data, change.revision)
            elif (isinstance(change, RecordChange)
                  and self.memory.set_record(change.name, change.record, change.revision)
                  and self._records_synced.is_set()):
                self._ensure_workers()
                worker = self.workers.get(change.name)
                if worker is not None:
                    worker.wake.set()

    async def _housekeeping(self) -> None:
        """Expire silent hosts, follow leadership, keep one worker per app, tick.

        It wakes when something asks (leadership, a disconnect, a view change) or at the next
        deadline: the first host that would expire, the next tick while an app is not quiet (or a
        quiet app's resync is due). An idle lattice whose apps are all quiet wakes it about once
        per host expiry window, not four times a second."""
        loop = asyncio.get_running_loop()
        next_tick = 0.0
        while True:
            stop_if_cancelled()
            delay = max(0.0, min(self._next_deadline(next_tick), loop.time() + HOUSEKEEPING_MAX_S) - loop.time())
            try:  # (not wait_for: on Python 3.11 it can swallow the cancel that stops us)
                async with asyncio.timeout(delay):
                    await self._housekeeping_wake.wait()
            except TimeoutError:
                pass
            self._housekeeping_wake.clear()
            try:
                self.observer.expire_hosts()
                if self.may_act() and not self.api.serving:
                    await self.api.serve()
                elif not self.may_act() and self.api.serving:
                    await self.api.stop()
                self._ensure_workers()
            except Exception:  # e.g. NATS away for a moment: try again on the next round
                log.exception("housekeeping failed")
            if loop.time() >= next_tick:
                now = next_tick = loop.time()
                next_tick += self.settings.tick_s
                for name, w in list(self.workers.items()):
                    if self._tick_wanted(name, now):
                        w.wake.set()
                await self._announce_all(now)

    def _next_deadline(self, next_tick: float) -> float:
        """The loop time housekeeping has to run by: a host's expiry, or a tick some app wants."""
        expiry = self.observer.view.next_expiry() if self.observer.ready else None
        deadline = float("inf") if expiry is None else expiry
        names = set(self.workers) | {n for n, r in self.records.items()
                                     if r.deployed_version is not None or n in self._announced}
        for name in names:
            quiet = self._quiet.get(name)
            if quiet is None or quiet[0] != self._view_version:
                return min(deadline, next_tick)  # an app that is not quiet: every tick
            deadline = min(deadline, max(next_tick, quiet[1]))
        return deadline

    async def _announce_all(self, now: float) -> None:
        """Announce status changes every tick too: a pass can take long (a start waits for its
        host to compile), and what changes meanwhile (a provider turning unhealthy) is news now.
        A quiet app's status cannot have changed without the view changing: it is skipped."""
        if not self.may_act():
            return
        for name, record in sorted(self.records.items()):
            if record.deployed_version is None and name not in self._announced:
                continue
            if not self._tick_wanted(name, now) or self._view_unchanged_since_quiet(name):
                continue  # (a quiet app whose resync is due: that pass announces)
            try:
                await self._announce_status(name, record)
            except Exception as exc:  # a manifest missing from memory, NATS away: next tick
                log.debug("status of %s not announced: %r", name, exc)

    def _ensure_workers(self) -> None:
        wanted = {n for n, r in self.records.items() if r.deployed}
        if hasattr(self, "observer"):
            wanted |= self.observer.view.app_names()
        for name in sorted(wanted - set(self.workers)):
            worker = AppWorker(self, name)
            worker.task = self.tasks.spawn(worker.run(), f"app-{name}")
            worker.wake.set()
            self.workers[name] = worker
        for name in list(self.workers):
            worker = self.workers[name]
            if name not in wanted and not worker.busy and not worker.wake.is_set():
                if worker.task is not None:
                    worker.task.cancel()
                del self.workers[name]

    # --- manifests ---------------------------------------------------------------------

    async def manifest(self, name: str, version: str) -> Manifest | None:
        """A stored manifest, from memory; read from the store only when memory does not have it
        (yet): the watch is behind, which a version this controller just stored never is."""
        found = self.memory.manifest(name, version)
        if found is None and self.memory.manifest_data(name, version) is None:
            data = await self.apps.get_manifest(name, version)
            if data is not None:
                self.memory.set_manifest(name, version, data, None)
                found = self.memory.manifest(name, version)
        return found

    async def deployed_manifests(self) -> dict[str, Manifest]:
        out: dict[str, Manifest] = {}
        for name, record in sorted(self.records.items()):
            if record.deployed_version is not None:
                m = await self.manifest(name, record.deployed_version)
                if m is not None:
                    out[name] = m
        return out

    async def shared_apps(self) -> dict[str, Manifest]:
        return {n: m for n, m in (await self.deployed_manifests()).items() if m.shared}

    # --- passes ------------------------------------------------------------------------

    async def reconcile_app(self, name: str) -> None:
        """One pass for one application: plan against a fresh snapshot, apply, remember."""
        record = self.records.get(name)
        epoch = self.executor.book.epoch(name)  # read with the record: a deploy changes both at once
        version = self._view_version
        observed = self.observer.view.snapshot()
        pass_id = f"{self.id}.{next(self._passes)}"
        self._quiet.pop(name, None)
        with self.metrics.reconcile(name, pass_id) as outcome:
            quiet = await self._reconcile(name, record, observed, pass_id, outcome, epoch)
        if quiet:
            self._quiet[name] = (version, self._resync_due(asyncio.get_running_loop().time()))
        else:
            self._housekeeping_wake.set()  # it ticks again while this app is not quiet

    async def _reconcile(self, name: str, record: AppRecord | None, observed: Any, pass_id: str,
                         outcome: dict[str, Any], epoch: int) -> bool:
        """One pass; whether it was quiet (nothing to do, the app deployed, no failure remembered)."""
        manifest: Manifest | None = None
        shared: dict[str, Manifest] = {}
        planned: AppStatus | None = None
        if record is not None and record.deployed_version is not None:
            manifest = await self.manifest(name, record.deployed_version)
            if manifest is None:
                log.error("cannot reconcile %s: manifest %s is missing from the store", name,
                          record.deployed_version)
                return False
            shared = await self.shared_apps()
            now = asyncio.get_running_loop().time()
            avoid, restarted = self.executor.book.avoid(name), self.executor.book.restarted_hosts(name, now)
            first = plan(manifest, observed, pass_id=pass_id, shared_apps=shared, avoid=avoid, now=now,
                         restarted=restarted)
            commands = first.commands
            if not avoid and not restarted:  # then its status is the one the API reports (planned with `now`)
                planned = first.status
        else:
            commands = tuple(undeploy(name, observed, pass_id=pass_id))
        if commands:
            what = f"{manifest.version}" if manifest is not None else "undeploy"
            log.info("[%s] %s (%s): %d command(s)", pass_id, name, what, len(commands))
            result = await self.executor.run(commands, pass_id, {name: epoch})
            outcome["applied"], outcome["failed"] = result.applied, result.failed
            if result.applied or result.failed:
                self.last_pass[name] = pass_id
        quiet = False
        if manifest is not None:  # forget failures of what has since reached its desired state
            after = self.observer.view.snapshot()
            st = plan(manifest, after, shared_apps=shared).status  # (without `now`: a problem in its grace counts)
            if commands or after is not observed:
                planned = None
            self.executor.book.clear_subjects(name, [c.id for c in st.components if c.state is AppState.DEPLOYED])
            quiet = (not commands and st.state is AppState.DEPLOYED and not self.executor.book.avoid(name)
                     and not self.executor.book.restarted_hosts(name, asyncio.get_running_loop().time()))
        if record is not None:
            await self._announce_status(name, record, (observed, shared, planned) if planned is not None else None)
        return quiet

    async def _announce_status(self, name: str, record: AppRecord, planned: Planned | None = None) -> None:
        """Publish ``app_status_changed`` (the whole `AppStatusReply`) when the status or its message changed
        (``planned``: the scalers' status of the deployed version against a view, as a pass just planned it)."""
        reply = await self.app_status(name, record, planned)
        key = (reply.version, reply.status.value, reply.message)
        if self._announced.get(name) == key:
            return
        self._announced[name] = key
        log.info("%s %s: %s%s", name, reply.version or "", reply.status.value,
                 f" ({reply.message})" if reply.message else "")
        ev = Event.new(EventType.APP_STATUS_CHANGED, source=self.id, data=reply.model_dump(mode="json"))
        try:
            await self.nc.publish(subjects.event(self.lattice, EventType.APP_STATUS_CHANGED), ev.encode())
        except Exception as exc:  # disconnected: the next pass announces it again
            self._announced.pop(name, None)
            log.debug("status event not sent: %r", exc)

    async def app_status(self, name: str, record: AppRecord, planned: Planned | None = None) -> AppStatusReply:
        """``planned``: the scalers' status against a view and the shared apps of then, used while both are
        still the current ones (a pass that issued nothing plans its app once, not again for its status)."""
        observed = self.observer.view.snapshot()
        last = self.last_pass.get(name)
        if record.deployed_version is not None:
            manifest = await self.manifest(name, record.deployed_version)
            if manifest is not None:
                shared = await self.shared_apps()
                same = (planned is not None and planned[0] is observed is self.observer.view.snapshot()
                        and planned[1].keys() == shared.keys() and all(planned[1][k] is m for k, m in shared.items()))
                return deployed_status(manifest, observed, self.executor.book.for_app(name),
                                       shared_apps=shared, last_pass=last, now=asyncio.get_running_loop().time(),
                                       planned=planned[2] if same and planned is not None else None)
        return undeployed_status(name, observed, last_pass=last)
