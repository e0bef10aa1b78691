"""LatticeClient: the Python API behind the CLI (control operations and calls).

    async with LatticeClient("nats://127.0.0.1:4222", "default") as c:
        hosts = await c.get_hosts()
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

from . import subjects
from .connection import NatsSettings, connect
from .control import (
    ComponentOp,
    CtlReply,
    HostInfo,
    HostOp,
    LabelDel,
    LabelPut,
    M,
    ProviderOp,
    ScaleComponentCommand,
    StartComponentCommand,
    StartProviderCommand,
    StopComponentCommand,
    StopHost,
    StopProviderCommand,
    UpdateComponentCommand,
    build,
)
from .errors import ErrorCode, TrellisError
from .events import Event, EventType
from .rpc_client import RpcClient

#: a host's id: an nkeys server public key ("N" and 55 base32 characters)
_FULL_HOST_ID = re.compile(r"N[A-Z2-7]{55}")

if TYPE_CHECKING:
    from .store import LatticeStore


class ControlError(TrellisError):
    """A control request failed; ``code`` says how."""


def _build(model: type[M], **raw: Any) -> M:
    try:
        return build(model, raw)
    except ValueError as exc:
        raise ControlError(str(exc), ErrorCode.BAD_REQUEST) from None


class LatticeClient:
    def __init__(
        self,
        nats_url: str | NatsSettings | None = None,
        lattice: str = "default",
        *,
        timeout_s: float = 5.0,
        nc: Client | None = None,
    ) -> None:
        if isinstance(nats_url, NatsSettings):
            self.nats_settings = nats_url
        else:
            self.nats_settings = NatsSettings.from_env(url=nats_url)
        self.lattice = subjects.check_lattice(lattice)
        self.timeout_s = timeout_s
        self.nc = nc
        self._own_nc = nc is None
        self._rpc: RpcClient | None = None

    async def __aenter__(self) -> LatticeClient:
        if self.nc is None:
            self.nc = await connect(
                self.nats_settings, name="trellis-client", max_reconnect_attempts=2
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._rpc is not None:
            await self._rpc.close()
        if self._own_nc and self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    # --- plumbing ------------------------------------------------------------------

    @property
    def connection(self) -> Client:
        """The NATS connection, once connected (inside ``async with``)."""
        assert self.nc is not None, "use 'async with LatticeClient(...)'"
        return self.nc

    async def request(self, subject: str, body: BaseModel | dict[str, Any] | None = None,
                      timeout_s: float | None = None) -> Any:
        """Send a control request; return ``response`` or raise ControlError."""
        assert self.nc is not None, "use 'async with LatticeClient(...)'"
        payload = body.model_dump_json().encode() if isinstance(body, BaseModel) else json.dumps(body or {}).encode()
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout_s or self.timeout_s)
        except NoRespondersError:
            raise ControlError(f"nobody answers {subject}: is the host running?", ErrorCode.NO_RESPONDERS) from None
        except (TimeoutError, NatsTimeout):
            raise ControlError(f"no reply on {subject} within {timeout_s or self.timeout_s}s",
                               ErrorCode.TIMEOUT) from None
        reply = CtlReply.model_validate_json(msg.data)
        if not reply.success:
            raise ControlError(reply.message, reply.code or ErrorCode.INTERNAL)
        return reply.response

    async def scatter(self, subject: str, body: bytes = b"{}", timeout_s: float = 1.0) -> list[CtlReply]:
        """Publish once and gather every reply that arrives before the deadline."""
        assert self.nc is not None
        inbox = self.nc.new_inbox()
        replies: list[CtlReply] = []
        sub = await self.nc.subscribe(inbox)
        try:
            await self.nc.publish(subject, body, reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (TimeoutError, NatsTimeout):
                    break
                try:
                    replies.append(CtlReply.model_validate_json(msg.data))
                except ValueError:
                    continue
        finally:
            await sub.unsubscribe()
        return replies

    # --- hosts ---------------------------------------------------------------------

    async def get_hosts(self, timeout_s: float = 1.0) -> list[HostInfo]:
        replies = await self.scatter(subjects.host_ping(self.lattice), timeout_s=timeout_s)
        hosts = [HostInfo.model_validate(r.response) for r in replies if r.success]
        return sorted(hosts, key=lambda h: (h.name, h.id))

    async def resolve_host(self, ref: str) -> str:
        """The id of the live host ``ref`` names: its id, its name, or a unique prefix of its id.
        A full host id is taken as it is (no lookup)."""
        if _FULL_HOST_ID.fullmatch(ref):
            return ref
        hosts = await self.get_hosts()
        matches = [h for h in hosts if ref in (h.id, h.name)] or [h for h in hosts if h.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0].id
        known = ", ".join(f"{h.name} ({h.id[:10]}…)" for h in hosts) or "none answers"
        if not matches:
            raise ControlError(f"no live host in lattice {self.lattice!r} has the id or name {ref!r}; "
                               f"hosts: {known}", ErrorCode.NOT_FOUND)
        raise ControlError(f"{ref!r} names {len(matches)} hosts ({', '.join(h.id for h in matches)}): "
                           "give more of the id", ErrorCode.BAD_REQUEST)

    async def host_request(self, host: str, op: str, body: BaseModel | None = None) -> Any:
        """A control request to the host ``host`` names (see :meth:`resolve_host`)."""
        return await self.request(subjects.host_op(self.lattice, await self.resolve_host(host), op), body)

    async def get_inventory(self, host_id: str) -> HostInfo:
        return HostInfo.model_validate(await self.host_request(host_id, HostOp.INVENTORY))

    async def put_label(self, host_id: str, key: str, value: str) -> HostInfo:
        return HostInfo.model_validate(await self.host_request(host_id, HostOp.LABEL_PUT,
                                                               LabelPut(key=key, value=value)))

    async def del_label(self, host_id: str, key: str) -> HostInfo:
        return HostInfo.model_validate(await self.host_request(host_id, HostOp.LABEL_DEL, LabelDel(key=key)))

    async def stop_host(self, host_id: str, timeout_s: float | None = None) -> Any:
        return await self.host_request(host_id, HostOp.STOP, StopHost(timeout_s=timeout_s))

    async def get_usage(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """What every live host's components and providers used since it started (``host/usage.py``)."""
        hosts = await self.get_hosts()

        async def one(host_id: str) -> dict[str, Any] | None:
            try:
                return dict(await self.request(subjects.host_op(self.lattice, host_id, HostOp.USAGE), None,
                                               timeout_s=timeout_s))
            except ControlError:
                return None  # gone since it answered the ping

        got = await asyncio.gather(*(one(h.id) for h in hosts))
        return [u for u in got if u is not None]

    # --- components ----------------------------------------------------------------

    async def pick_host(self, constraints: dict[str, str] | None = None) -> HostInfo:
        """The live host best placed for new work among those carrying ``constraints`` labels."""
        hosts = await self.get_hosts()
        eligible = [h for h in hosts if all(h.labels.get(k) == v for k, v in (constraints or {}).items())]
        if not eligible:
            want = ", ".join(f"{k}={v}" for k, v in (constraints or {}).items())
            raise ControlError(f"no host in lattice {self.lattice!r}" + (f" has labels {want}" if want else ""),
                               ErrorCode.NOT_FOUND)
        return min(eligible, key=lambda h: (len(h.components), -h.capacity.memory_available_bytes, h.id))

    async def request_and_wait(self, subject: str, body: BaseModel, match: dict[str, str],
                               ok: tuple[str, ...], failed: tuple[str, ...], timeout_s: float) -> Event:
        """Send a request, then wait for the event that reports its outcome.

        The subscription is made before the request is sent, so the event cannot be missed.
        """
        assert self.nc is not None
        outcome: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Any) -> None:
            try:
                ev = Event.decode(msg.data)
            except ValueError:
                return
            if all(ev.data.get(k) == v for k, v in match.items()) and not outcome.done():
                outcome.set_result(ev)

        subs = [await self.nc.subscribe(subjects.event(self.lattice, t), cb=on_event) for t in ok + failed]
        try:
            await self.request(subject, body)
            try:
                return await asyncio.wait_for(outcome, timeout_s)
            except TimeoutError:
                what = " ".join(f"{k}={v}" for k, v in match.items())
                raise ControlError(f"{what}: no outcome within {timeout_s}s", ErrorCode.TIMEOUT) from None
        finally:
            for sub in subs:
                await sub.unsubscribe()

    async def _component_op(self, host_id: str, op: str, body: BaseModel, component_id: str,
                            wait: bool, timeout_s: float) -> dict[str, Any]:
        """Send a component operation; with ``wait``, return its outcome event's data."""
        subject = subjects.component_op(self.lattice, host_id, op)
        if not wait:
            reply: dict[str, Any] = await self.request(subject, body)
            return reply
        ev = await self.request_and_wait(
            subject, body, {"component_id": component_id, "host_id": host_id},
            (EventType.COMPONENT_SCALED,), (EventType.COMPONENT_SCALE_FAILED,), timeout_s)
        if ev.type == EventType.COMPONENT_SCALE_FAILED:
            raise ControlError(f"component {component_id} {ev.data.get('operation', '')} failed on "
                               f"{host_id}: {ev.data.get('error')}", ErrorCode.INVOCATION_FAILED)
        return ev.data

    async def start_component(self, image: str, component_id: str, *, max_instances: int = 1,
                              host_id: str | None = None, constraints: dict[str, str] | None = None,
                              wait: bool = True, timeout_s: float = 120.0, **spec: Any) -> dict[str, Any]:
        req = _build(StartComponentCommand, component_id=component_id, image=image, max_instances=max_instances, **spec)
        host_id = (await self.pick_host(constraints)).id if host_id is None else await self.resolve_host(host_id)
        data = await self._component_op(host_id, ComponentOp.START, req, component_id, wait, timeout_s)
        return {**data, "host_id": host_id}

    async def hosts_running(self, component_id: str, host_id: str | None = None) -> list[str]:
        """The ids of the hosts running ``component_id`` (only ``host_id``, resolved, when given)."""
        if host_id:
            return [await self.resolve_host(host_id)]
        found = [h.id for h in await self.get_hosts() if any(c.id == component_id for c in h.components)]
        if not found:
            raise ControlError(f"component {component_id} is not running on any host", ErrorCode.NOT_FOUND)
        return found

    async def stop_component(self, component_id: str, *, host_id: str | None = None, wait: bool = True,
                             timeout_s: float = 60.0) -> list[str]:
        hosts = await self.hosts_running(component_id, host_id)
        for h in hosts:
            await self._component_op(h, ComponentOp.STOP, StopComponentCommand(component_id=component_id),
                                     component_id, wait, timeout_s)
        return hosts

    async def scale_component(self, component_id: str, max_instances: int, *, host_id: str | None = None,
                              annotations: dict[str, str] | None = None, wait: bool = True,
                              timeout_s: float = 60.0) -> list[str]:
        hosts = await self.hosts_running(component_id, host_id)
        req = _build(ScaleComponentCommand, component_id=component_id, max_instances=max_instances,
                     annotations=annotations)
        for h in hosts:
            await self._component_op(h, ComponentOp.SCALE, req, component_id, wait, timeout_s)
        return hosts

    async def update_component(self, component_id: str, image: str, *, host_id: str | None = None,
                               wait: bool = True, timeout_s: float = 120.0) -> list[str]:
        hosts = await self.hosts_running(component_id, host_id)
        req = _build(UpdateComponentCommand, component_id=component_id, image=image)
        for h in hosts:
            await self._component_op(h, ComponentOp.UPDATE, req, component_id, wait, timeout_s)
        return hosts

    # --- providers ------------------------------------------------------------------

    async def start_provider(self, image: str, provider_id: str, *, host_id: str | None = None,
                             constraints: dict[str, str] | None = None, config: list[str] | None = None,
                             inline_config: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                             wait: bool = True, timeout_s: float = 60.0) -> dict[str, Any]:
        req = _build(StartProviderCommand, provider_id=provider_id, image=image, config=config or [],
                     inline_config=inline_config or {}, annotations=annotations or {})
        host_id = (await self.pick_host(constraints)).id if host_id is None else await self.resolve_host(host_id)
        subject = subjects.provider_op(self.lattice, host_id, ProviderOp.START)
        if not wait:
            return {**await self.request(subject, req), "host_id": host_id}
        ev = await self.request_and_wait(
            subject, req, {"provider_id": provider_id, "host_id": host_id},
            (EventType.PROVIDER_STARTED,), (EventType.PROVIDER_START_FAILED,), timeout_s)
        if ev.type == EventType.PROVIDER_START_FAILED:
            raise ControlError(f"provider {provider_id} failed to start on {host_id}: {ev.data.get('error')}",
                               ErrorCode.INVOCATION_FAILED)
        return {**ev.data, "host_id": host_id}

    async def stop_provider(self, provider_id: str, *, host_id: str | None = None, wait: bool = True,
                            timeout_s: float = 60.0) -> list[str]:
        if host_id:
            hosts = [await self.resolve_host(host_id)]
        else:
            hosts = [h.id for h in await self.get_hosts() if any(p.id == provider_id for p in h.providers)]
            if not hosts:
                raise ControlError(f"provider {provider_id} is not running on any host", ErrorCode.NOT_FOUND)
        for h in hosts:
            req = StopProviderCommand(provider_id=provider_id)
            subject = subjects.provider_op(self.lattice, h, ProviderOp.STOP)
            if wait:
                await self.request_and_wait(subject, req, {"provider_id": provider_id, "host_id": h},
                                            (EventType.PROVIDER_STOPPED,), (), timeout_s)
            else:
                await self.request(subject, req)
        return hosts

    # --- calls and artifacts -------------------------------------------------------------

    @property
    def rpc(self) -> RpcClient:
        assert self.nc is not None, "use 'async with LatticeClient(...)'"
        if self._rpc is None:
            self._rpc = RpcClient(self.nc, self.lattice, source="client")
        return self._rpc

    async def call(self, component_id: str, operation: str, *args: Any, timeout_s: float = 30.0,
                   retryable: bool = True) -> Any:
        """Invoke ``ns:pkg/iface.func`` on a component; arguments and result are plain values."""
        return await self.rpc.call(component_id, operation, list(args), timeout_s=timeout_s, retryable=retryable)

    async def push(self, data: bytes) -> str:
        """Put a .wasm into the lattice's artifact store; returns ``lattice://sha256:…``."""
        from .artifacts import push

        assert self.nc is not None
        return await push(self.nc, self.lattice, data)

    # --- links and named config (JetStream KV; see interfaces/store.py) --------------
    # Imports stay local so this block only adds methods to the class.

    def lattice_store(self) -> LatticeStore:
        """The :class:`trellis.interfaces.store.LatticeStore` on this client's connection."""
        from .store import LatticeStore

        assert self.nc is not None, "use 'async with LatticeClient(...)'"
        store: LatticeStore | None = getattr(self, "_lattice_store", None)
        if store is None or store.nc is not self.nc:
            store = LatticeStore(self.nc, self.lattice, source="trellis-client")
            self._lattice_store = store
        return store

    async def put_link(self, link: Any) -> Any:
        """Store an :class:`trellis.interfaces.links.Link`; raises LinkError (bad_request / conflict)."""
        return await self.lattice_store().put_link(link)

    async def del_link(self, source_id: str, namespace: str, package: str, link_name: str = "default",
                       target: str | None = None) -> list[Any]:
        """Delete links (only to ``target`` if given); returns the links removed (may be empty)."""
        return await self.lattice_store().delete_link(source_id, namespace, package, link_name,
                                                      target)

    async def get_links(self, source: str | None = None, target: str | None = None) -> list[Any]:
        """Links of the lattice, optionally only those from ``source`` / to ``target``."""
        return await self.lattice_store().list_links(source=source, target=target)

    async def put_config(self, name: str, values: dict[str, str]) -> dict[str, str]:
        """Store (replace) a named config; raises LatticeConfigError on a bad name or value."""
        return await self.lattice_store().put_config(name, values)

    async def get_config(self, name: str) -> dict[str, str]:
        """A named config; raises StoreError (not_found) when there is none."""
        return await self.lattice_store().get_config(name)

    async def del_config(self, name: str) -> bool:
        """Delete a named config; False when there was none."""
        return await self.lattice_store().delete_config(name)
