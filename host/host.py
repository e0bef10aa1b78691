"""The host: joins a lattice, announces itself, heartbeats, answers control requests."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from trellis.interfaces import subjects, tracing
from trellis.interfaces.connection import connect, goodbye
from trellis.interfaces.control import (
    Capacity,
    ComponentJson,
    CtlReply,
    Empty,
    HostBeat,
    HostInfo,
    HostOp,
    LabelDel,
    LabelPut,
    StopHost,
    inventory_digest,
)
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.policy import PolicyClient
from trellis.interfaces.secrets import SignedGrant
from trellis.kit.service import Service
from trellis.kit.version import __version__
from trellis.signing import Trust
from trellis.signing import secrets as sealed

from .admission import Admission
from .capacity import read_capacity
from .components import ComponentManager
from .control import ControlRouter
from .identity import Identity, state_id
from .labels import BUILTIN_KEYS, LabelError, builtin_labels, check_user_label
from .metrics import HostMetrics
from .provider_group import RunnerFactory
from .providers import ProviderManager
from .settings import HostSettings
from .usage import host_usage

log = logging.getLogger(__name__)


class Host(Service):
    name = "host"

    def __init__(self, settings: HostSettings, providers_here: RunnerFactory | None = None) -> None:
        """``providers_here``: run the built-in providers' group in this process (``provider_group.py``;
        ``trellis host`` passes it, ``TRELLIS_PROVIDERS_IN_HOST=0`` declines it)."""
        super().__init__()
        self.settings = settings
        subjects.check_lattice(settings.lattice)
        if settings.seed:
            self.identity = Identity.from_seed(settings.seed)
        elif settings.seed_file:
            self.identity = Identity.load_or_create(settings.seed_file)
        else:
            self.identity = Identity.generate()
        self.id = self.identity.public_key
        self.friendly_name = settings.name or self.identity.friendly_name
        self.lattice = settings.lattice
        self.state_id = ""  # read from the state dir at start
        for k in settings.labels:
            check_user_label(k)
        self.labels: dict[str, str] = {**builtin_labels(), **settings.labels}
        self.nc: Client | None = None
        self.policy = PolicyClient(None, settings.policy)  # connected in _start
        self.router = ControlRouter()
        self._subs: list[Any] = []
        self._started_mono = time.monotonic()
        #: each running component's JSON for the inventory digest of every heartbeat (by identity)
        self._described: ComponentJson = {}
        self._started_at = _dt.datetime.now(_dt.UTC).isoformat()
        self._stop_requested = asyncio.Event()
        self._stopper: asyncio.Task[None] | None = None  # close() outlives the request task
        self.admission = Admission(Trust(settings.trusted_issuers), settings.allow_python_providers,
                                   settings.state_dir)
        self._register_routes()
        self.components = ComponentManager(self)
        self.providers = ProviderManager(self, providers_here)
        self.metrics = HostMetrics(self, prometheus=settings.metrics_port is not None, scope=settings.metrics_scope)
        #: where /metrics is served, once started (None: not served)
        self.metrics_address: tuple[str, int] | None = None

    # --- lifecycle ---------------------------------------------------------------

    async def _start(self) -> None:
        tracing.setup_tracing("trellis-host")
        self.state_id = state_id(self.settings.state_dir)
        self.nc = await connect(self.settings.nats, name=f"trellis-host-{self.friendly_name}")
        self.policy = PolicyClient(self.nc, self.settings.policy, {
            "kind": "host", "publicKey": self.id, "name": self.friendly_name, "lattice": self.lattice,
            "labels": self.labels})
        if self.policy.enabled:
            self.router.policy_check = self._policy_check
        await self.components.start()
        self.metrics.started()
        if self.settings.metrics_port is not None:
            self.metrics_address = self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
            log.info("metrics at http://%s:%d/metrics", *self.metrics_address)
        # Control requests (a ping included) only once its workers are ready: a host that answers
        # takes work, and a start sent to a host still booting its workers must not be accepted.
        # Flushed before host_started: whoever hears that event finds the host answering.
        for subject in subjects.ctl_wildcard_for_host(self.lattice, self.id):
            self._subs.append(await self.nc.subscribe(subject, cb=self._on_control))
        await self.nc.flush()
        await self.publish_event(EventType.HOST_STARTED, self._host_event_data())
        self.tasks.spawn(self._heartbeat_loop(), "heartbeat")
        log.info("host %s (%s) joined lattice %s", self.friendly_name, self.id, self.lattice)

    async def _close(self) -> None:
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # connection may already be gone
                pass
        self._subs.clear()
        await self.drain_workloads(self.settings.stop_timeout_s)
        if nc.is_connected:  # with NATS gone (it died with our parent) there is nobody to tell
            try:
                await self.publish_event(
                    EventType.HOST_STOPPED, {"host_id": self.id, "reason": self.close_reason or ""}
                )
                await nc.flush(timeout=2)
            except Exception as exc:
                log.warning("could not announce host_stopped: %r", exc)
        await goodbye(nc)
        self.metrics.shutdown()

    async def drain_workloads(self, timeout_s: float) -> None:
        """Stop taking invocations, let those in flight finish (up to the timeout), stop workers."""
        await asyncio.gather(self.components.close(timeout_s), self.providers.close(timeout_s))

    def log_env(self) -> dict[str, str]:
        """The logging variables for this host's workers and providers (interfaces/logs.py)."""
        env = {}
        if self.settings.log_format:
            env["TRELLIS_LOG_FORMAT"] = self.settings.log_format
        if self.settings.log_to:
            env["TRELLIS_LOG_TO"] = self.settings.log_to
        return env

    # --- description ---------------------------------------------------------------

    def capacity(self) -> Capacity:
        comps = self.components.describe()
        pool = self.components.pool
        return Capacity(**read_capacity(), workers=pool.count if pool else 0, components=len(comps),
                        providers=len(self.providers.running), instances_max=sum(c.max_instances for c in comps))

    def info(self) -> HostInfo:
        info = self._describe()
        info.inventory = inventory_digest(info, self._described)
        return info

    def _describe(self) -> HostInfo:
        return HostInfo(
            id=self.id,
            name=self.friendly_name,
            lattice=self.lattice,
            labels=dict(self.labels),
            version=__version__,
            uptime_s=round(time.monotonic() - self._started_mono, 3),
            started_at=self._started_at,
            capacity=self.capacity(),
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            components=self.components.describe(),
            providers=self.providers.describe(),
            state_id=self.state_id,
            pending=dict(self.components.pending),
        )

    def _host_event_data(self) -> dict[str, Any]:
        return self.info().model_dump(mode="json")

    # --- secrets -----------------------------------------------------------------------

    async def fetch_secrets(self, grant: SignedGrant) -> dict[str, dict[str, str]]:
        """The secrets of wadm's grant, from the keyholder, in their wire form (for a worker or a
        provider's bootstrap). The request is signed with this host's key; the answer is sealed to
        a key made for it. Raises SecretsUnavailable with the keyholder's reason."""
        assert self.nc is not None
        values = await sealed.fetch(self.nc, self.lattice, self.identity.seed, self.id, grant)
        return {name: v.to_wire() for name, v in values.items()}

    # --- events ----------------------------------------------------------------------

    async def publish_event(self, event_type: str, data: dict[str, Any]) -> None:
        assert self.nc is not None
        ev = Event.new(event_type, source=self.id, data=data)
        await self.nc.publish(subjects.event(self.lattice, event_type), ev.encode())

    async def _heartbeat_loop(self) -> None:
        """Every ``heartbeat_interval_s``: the whole `HostInfo` when its inventory digest changed since
        the last one sent, else a light `HostBeat` (alive, uptime, capacity, the same digest). An idle
        host's heartbeat is a few hundred bytes whatever it runs, and nobody parses its inventory."""
        interval = self.settings.heartbeat_interval_s
        sent = ""  # the inventory digest of the last whole heartbeat sent
        while True:
            await asyncio.sleep(interval)
            try:
                info = self.info()
                if info.inventory != sent or not self.settings.light_heartbeats:
                    await self.publish_event(EventType.HOST_HEARTBEAT, info.model_dump(mode="json"))
                    sent = info.inventory
                else:
                    beat = HostBeat(id=self.id, name=self.friendly_name, uptime_s=info.uptime_s,
                                    capacity=info.capacity, heartbeat_interval_s=interval, inventory=info.inventory)
                    await self.publish_event(EventType.HOST_HEARTBEAT, beat.model_dump(mode="json"))
                self.metrics.heartbeat()
            except Exception as exc:  # disconnected: nats-py buffers or raises; keep beating
                sent = ""
                log.debug("heartbeat not sent: %r", exc)

    # --- control interface -----------------------------------------------------------

    def _register_routes(self) -> None:
        r = self.router
        r.add("host", "ping", Empty, self._op_ping, privileged=False)
        r.add("host", HostOp.INVENTORY, Empty, self._op_inventory, privileged=False)
        r.add("host", HostOp.LABEL_PUT, LabelPut, self._op_label_put)
        r.add("host", HostOp.LABEL_DEL, LabelDel, self._op_label_del)
        r.add("host", HostOp.STOP, StopHost, self._op_stop)
        r.add("host", HostOp.USAGE, Empty, self._op_usage)

    async def _on_control(self, msg: Msg) -> None:
        if not msg.reply:
            return
        self.tasks.spawn(self._answer(msg), "control")

    async def _answer(self, msg: Msg) -> None:
        try:
            reply = await self.router.handle(msg.subject, msg.data)
        except Exception as exc:  # the router already maps errors; this is a last resort
            reply = CtlReply.fail(ErrorCode.INTERNAL, repr(exc))
        try:
            await msg.respond(reply.encode())
        except Exception as exc:
            log.debug("control reply lost: %r", exc)

    async def _policy_check(self, area: str, op: str, request: Any) -> None:
        await self.policy.require("control", {
            "area": area, "operation": op, "hostId": self.id, "request": request.model_dump(mode="json"),
        }, f"{area} {op} on host {self.friendly_name}")

    async def _op_ping(self, _: Empty) -> HostInfo:
        return self.info()

    async def _op_inventory(self, _: Empty) -> HostInfo:
        return self.info()

    async def _op_usage(self, _: Empty) -> dict[str, Any]:
        return await host_usage(self)

    async def _op_label_put(self, req: LabelPut) -> HostInfo:
        try:
            check_user_label(req.key)
        except LabelError as exc:
            code = ErrorCode.READ_ONLY if req.key in BUILTIN_KEYS else ErrorCode.BAD_REQUEST
            raise TrellisError(str(exc), code) from None
        self.labels[req.key] = req.value
        await self.publish_event(EventType.LABELS_CHANGED, {"host_id": self.id, "labels": self.labels})
        return self.info()

    async def _op_label_del(self, req: LabelDel) -> HostInfo:
        if req.key in BUILTIN_KEYS:
            raise TrellisError(f"label {req.key!r} is built in and read-only", ErrorCode.READ_ONLY)
        if req.key not in self.labels:
            raise TrellisError(f"host has no label {req.key!r}", ErrorCode.NOT_FOUND)
        del self.labels[req.key]
        await self.publish_event(EventType.LABELS_CHANGED, {"host_id": self.id, "labels": self.labels})
        return self.info()

    async def _op_stop(self, req: StopHost) -> CtlReply:
        timeout = self.settings.stop_timeout_s if req.timeout_s is None else req.timeout_s
        self.settings.stop_timeout_s = timeout
        self._stop_requested.set()
        # Reply first, then stop outside this request's task (close cancels owned tasks).
        self._stopper = asyncio.get_running_loop().create_task(self.close(reason="stop requested"))
        return CtlReply.ok({"host_id": self.id}, message=f"host stopping (drain timeout {timeout}s)")
