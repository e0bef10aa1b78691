"""Test a provider's handlers and callbacks directly: no NATS, no lattice, no host.

Like Temporal's ``ActivityEnvironment``::

    from trellis.providers.sdk.testing import ProviderEnvironment

    async def test_get():
        env = ProviderEnvironment(kv, config={"bucket": "b"})
        async with env:                       # on_start ... on_shutdown
            await env.put_link(link, {"ttl": "5"})
            assert await env.invoke("wasi:keyvalue/store.get", "b", "k", source="comp") is None

Handlers run exactly as on the lattice (same context, deadline, argument
checks, sync handlers in a thread); errors come back as raised
(:class:`ProviderError` unchanged). Calls the provider makes go to a handler
you install with :meth:`ProviderEnvironment.on_call` and are recorded in
:attr:`ProviderEnvironment.calls`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from trellis.interfaces.envelope import EnvelopeError, Reply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.links import Link, parse_wit_interface
from trellis.interfaces.resources import parse_address
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.secrets import SecretValue

from ._private.context import Context, ProviderInfo, make_context
from ._private.definition import Provider, call_maybe_sync
from ._private.dispatch import health_result, invoke_export, run_callback
from ._private.errors import ProviderError
from ._private.state import Action, ConfigUpdated, LinkDeleted, LinkPut, LinkState


@dataclass(frozen=True)
class OutgoingCall:
    """A call the provider made to a component."""

    target: str
    operation: str
    args: list[Any]
    link_name: str
    trace: Mapping[str, str]


CallHandler = Callable[[OutgoingCall], Any | Awaitable[Any]]


class ProviderEnvironment:
    """A provider instance without a lattice."""

    def __init__(self, provider: Provider, *, provider_id: str | None = None, host_id: str = "test-host",
                 lattice: str = "test", config: Mapping[str, str] | None = None,
                 configs: Mapping[str, Mapping[str, str]] | None = None, config_names: tuple[str, ...] = (),
                 links: tuple[Link, ...] | list[Link] = (), secrets: Mapping[str, str | bytes] | None = None) -> None:
        self.provider = provider
        #: the provider's secrets, as a manifest's ``secrets:`` would give them (``info.secrets``)
        self.secrets = MappingProxyType({k: SecretValue(v) for k, v in (secrets or {}).items()})
        self.provider_id = provider_id or provider.name
        self.host_id = host_id
        self.lattice = lattice
        self.instance_id = uuid.uuid4().hex
        self.state = LinkState(self.provider_id, tuple(config_names), dict(config or {}))
        self.state.replace(links, {n: dict(v) for n, v in (configs or {}).items()})
        self.calls: list[OutgoingCall] = []
        self._call_handler: CallHandler | None = None
        #: callback name → how many times it failed (errors are logged, as on the lattice)
        self.failures: dict[str, int] = {}

    @property
    def info(self) -> ProviderInfo:
        return ProviderInfo(
            provider_id=self.provider_id, host_id=self.host_id, lattice=self.lattice, instance_id=self.instance_id,
            config=MappingProxyType(self.state.own_config()),
            links=tuple(a.link for _, a in sorted(self.state.applied.items())), secrets=self.secrets,
        )

    @property
    def connection(self) -> None:
        """No NATS here: ``nats_connection()`` returns None in tests."""
        return None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Run on_start, then on_link_put for the links given to the constructor."""
        await self._callback("on_start", raise_errors=True)
        await self._fire(self.state.plan(report_configs=False))

    async def shutdown(self, grace_s: float = 1.0) -> None:
        await self._callback("on_shutdown", grace_s)

    async def __aenter__(self) -> ProviderEnvironment:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def health(self) -> tuple[bool, str]:
        ok, result = await run_callback(self.provider, "health", info=self.info, instance=self)
        return health_result(ok, result)

    # --- links and config ---------------------------------------------------------------

    async def put_link(self, link: Link, config: Mapping[str, str] | None = None) -> None:
        """Put a link (this provider must be its source or target). ``config`` is stored under the
        link's config names (for this provider's side) unless they are already set."""
        if not self.state.concerns(link):
            raise ValueError(f"link {link.describe()} does not involve provider {self.provider_id}")
        names = link.config_for(self.provider_id)
        if config is not None:
            if not names:
                raise ValueError(f"link {link.describe()} names no config for {self.provider_id}; "
                                 "add target_config (or source_config) names to pass config")
            self.state.config_put(names[0], config)
        self.state.link_put(link)
        await self._fire(self.state.plan())

    async def delete_link(self, link: Link) -> None:
        self.state.link_deleted(link)
        await self._fire(self.state.plan())

    async def update_config(self, name: str, values: Mapping[str, str] | None) -> None:
        """Change (or, with None, delete) a named config; fires on_config_updated / on_link_put as due."""
        if values is None:
            self.state.config_deleted(name)
        else:
            self.state.config_put(name, values)
        await self._fire(self.state.plan())

    # --- invocations ----------------------------------------------------------------------

    def context(self, operation: str = "test:test/test.test", *, source: str = "test-component",
                link_name: str = "default", link: Link | None = None, config: Mapping[str, str] | None = None,
                timeout_s: float = 30.0, trace: Mapping[str, str] | None = None, attempt: int = 1) -> Context:
        """A context as a handler would get it (for calling handlers by hand)."""
        interface, function = parse_address(operation)
        applied = self._applied_for(source, interface, link_name) if link is None else None
        if applied is not None:
            link = applied.link
        if config is None:
            config = applied.config if applied is not None else {}
        return make_context(
            info=self.info, source=source, link_name=link_name, link=link, config=config, interface=interface,
            function=function, invocation_id=uuid.uuid4().hex, trace=dict(trace or {}),
            deadline=time.time() + timeout_s, attempt=attempt, instance=self,
        )

    async def invoke(self, operation: str, *args: Any, source: str = "test-component", link_name: str = "default",
                     link: Link | None = None, config: Mapping[str, str] | None = None, timeout_s: float = 30.0,
                     trace: Mapping[str, str] | None = None) -> Any:
        """Call an exported function as a component would; the result must be encodable for the wire."""
        interface, function = parse_address(operation)
        defn = self.provider.find(interface, function)
        if defn is None:
            known = ", ".join(sorted(self.provider.exports)) or "nothing"
            raise ProviderError(ErrorCode.UNKNOWN_OPERATION,
                                f"provider {self.provider_id} does not export {operation} (it exports {known})")
        ctx = self.context(operation, source=source, link_name=link_name, link=link, config=config,
                           timeout_s=timeout_s, trace=trace)
        result = await invoke_export(defn, list(args), ctx, self)
        try:
            Reply(id=ctx.invocation_id, result=result).encode()
        except EnvelopeError as exc:
            raise TypeError(f"{operation} returned a value that cannot travel back to the caller: {exc}") from None
        return result

    def on_call(self, handler: CallHandler) -> CallHandler:
        """Answer the provider's outgoing calls (sync or async ``handler(OutgoingCall) -> result``)."""
        self._call_handler = handler
        return handler

    async def call(self, target: str | Link, operation: str, args: list[Any], *,
                   timeout_s: float | None = None, link_name: str | None = None,
                   deadline_ms: int | None = None, trace: dict[str, str] | None = None) -> Any:
        """What ``provider.call`` / ``ctx.call`` reach in tests: checks imports, records, answers."""
        self.provider.check_import(operation)
        if isinstance(target, Link):
            target_id, link_name = target.target, link_name or target.name
        else:
            target_id = target
        call = OutgoingCall(target_id, operation, list(args), link_name or "default", MappingProxyType(trace or {}))
        self.calls.append(call)
        if self._call_handler is None:
            raise RpcError(f"nobody serves {target_id!r} in this test (install one with env.on_call)",
                           ErrorCode.TIMEOUT, "timeout")
        return await call_maybe_sync(self._call_handler, call)

    # --- helpers -----------------------------------------------------------------------

    def _applied_for(self, source: str, interface: str, link_name: str) -> LinkPut | None:
        try:
            wi = parse_wit_interface(interface)
        except ValueError:
            return None
        for a in self.state.applied.values():
            lk = a.link
            if (lk.source_id == source and lk.target == self.provider_id and lk.name == link_name
                    and lk.covers(wi.namespace, wi.package, wi.interface)):
                return a
        return None

    async def _callback(self, kind: str, *args: Any, raise_errors: bool = False) -> Any:
        ok, result = await run_callback(self.provider, kind, *args, info=self.info, instance=self)
        if not ok:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if raise_errors:
                raise result
        return result

    async def _fire(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, LinkPut):
                await self._callback("on_link_put", action.link, dict(action.config))
            elif isinstance(action, LinkDeleted):
                await self._callback("on_link_deleted", action.link)
            elif isinstance(action, ConfigUpdated):
                await self._callback("on_config_updated", action.name, dict(action.values))
