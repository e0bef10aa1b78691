"""``builtin:http-server``: the provider around the HTTP front.

It exports nothing and imports ``trellis:http/incoming-handler``: a link from
this provider (the source) to a component (the target) for that interface, or for
``wasi:http/incoming-handler`` (as wadm manifests link a ``wasi:http`` proxy
component; the component's host serves it through ``wasi:http``), is a route, its ``source_config``
says where and how to serve it
(:mod:`.config`). Callbacks keep the front in step with the links; health
reports the listeners.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from trellis.httpfront.config import RouteConfigError, ServerConfig, parse_route, parse_server
from trellis.httpfront.gateway import NatsCaller
from trellis.httpfront.listener import Caller
from trellis.httpfront.routes import Route
from trellis.providers.sdk import Link, Provider, ProviderInfo, nats_connection
from trellis.samehost import handoff as connection_handoff

from .front import HttpFront
from .handoff import Handoff
from .tls import CERT_SECRET, KEY_SECRET, server_context

log = logging.getLogger("trellis.providers.http_server")

NAME = "http-server"
INTERFACE = "trellis:http/incoming-handler"
#: the same route for a wasi:http proxy component (wadm's spelling)
WASI_INTERFACE = "wasi:http/incoming-handler"

CallerFactory = Callable[[ProviderInfo], Caller]


def lattice_caller(info: ProviderInfo) -> NatsCaller:
    """Calls over the provider runtime's own NATS connection."""
    nc = nats_connection()
    if nc is None:
        raise RuntimeError("http-server calls components over the lattice: run it on a host "
                           "(builtin:http-server) or with 'python -m trellis.providers.builtin.http_server'")
    return NatsCaller(nc, info.lattice, source=info.provider_id)


class HttpServer:
    """The provider's state: the front, and the links it was told about."""

    def __init__(self, caller_factory: CallerFactory = lattice_caller) -> None:
        self.caller_factory = caller_factory
        self.front: HttpFront | None = None
        self.caller: Any = None
        self.handoff: Handoff | None = None
        self.links: dict[tuple[str, ...], tuple[Link, dict[str, str]]] = {}
        self.defaults: dict[str, str] = {}
        self.config_error: str | None = None

    def _settings(self, own: Mapping[str, str]) -> ServerConfig:
        self.defaults = dict(own)
        try:
            settings = parse_server(own)
            self.config_error = None
            return settings
        except RouteConfigError as exc:
            self.config_error = f"provider config: {exc}"
            log.error("http-server: %s; using the defaults", self.config_error)
            self.defaults = {}
            return ServerConfig()

    # --- lifecycle callbacks -------------------------------------------------------------

    async def start(self, *, info: ProviderInfo, **kwargs: Any) -> None:
        self.caller = self.caller_factory(info)
        if hasattr(self.caller, "start"):
            await self.caller.start()
        if info.local_workers and connection_handoff.available():  # workers with handoff off do not listen
            # connections to components this host's workers serve are answered by those workers
            self.handoff = Handoff(info.local_workers, source=info.provider_id)
            await self.handoff.start()
        tls = server_context(info.secrets)  # a TlsError stops the start: no plain HTTP in its place
        if tls is not None:
            log.info("http-server: serving HTTPS (certificate from the %s/%s secrets)", CERT_SECRET, KEY_SECRET)
        self.front = HttpFront(self.caller, self._settings(info.config), self.handoff, tls)
        await self.front.start()

    async def link_put(self, link: Link, config: dict[str, str], *, info: ProviderInfo, **kwargs: Any) -> None:
        if link.source_id != info.provider_id or not (link.covers("trellis", "http", "incoming-handler")
                                                      or link.covers("wasi", "http", "incoming-handler")):
            log.info("ignoring link %s: http-server serves links from itself for %s (or %s)", link.describe(),
                     INTERFACE, WASI_INTERFACE)
            return
        self.links[link.identity] = (link, dict(config))
        self._route(link, config)
        await self._reconcile()

    async def link_deleted(self, link: Link, *, info: ProviderInfo, **kwargs: Any) -> None:
        if self.links.pop(link.identity, None) is not None and self.front is not None:
            self.front.delete(link.identity)
            await self._reconcile()

    async def config_updated(self, name: str, values: dict[str, str], *, info: ProviderInfo, **kwargs: Any) -> None:
        """The provider's own config may have changed: its route keys are every link's defaults."""
        if dict(info.config) == self.defaults or self.front is None:
            return
        self.front.settings = self._settings(info.config)  # new connections get the new timeouts
        for link, config in self.links.values():
            self._route(link, config)
        await self._reconcile()

    async def health(self, **kwargs: Any) -> tuple[bool, str]:
        if self.front is None:
            return False, "not started"
        ok, message = self.front.health()
        if self.config_error:
            return False, f"{message}; {self.config_error}"
        return ok, message

    async def shutdown(self, grace_s: float, **kwargs: Any) -> None:
        if self.front is not None:
            await self.front.close(reason="provider shutting down")
        if self.handoff is not None:
            await self.handoff.close()
        if self.caller is not None and hasattr(self.caller, "close"):
            await self.caller.close()

    # --- helpers -------------------------------------------------------------------------

    def _route(self, link: Link, config: Mapping[str, str]) -> None:
        assert self.front is not None
        try:
            route: Route | str = Route(link.identity, link.target, link.name, parse_route(config, self.defaults))
        except RouteConfigError as exc:
            route = f"bad config: {exc}"
        self.front.put(link.identity, route)

    async def _reconcile(self) -> None:
        if self.front is not None:
            await self.front.reconcile()


def build(state: HttpServer | None = None) -> Provider:
    """A fresh provider; tests pass an :class:`HttpServer` with a caller of their choosing."""
    state = state or HttpServer()
    provider = Provider(NAME, imports=[INTERFACE, WASI_INTERFACE], max_concurrent=64,
                        description="serves HTTP: each request is a call to a linked component's "
                                    "trellis:http/incoming-handler.handle")
    provider.on_start(state.start)
    provider.on_link_put(state.link_put)
    provider.on_link_deleted(state.link_deleted)
    provider.on_config_updated(state.config_updated)
    provider.health(state.health)
    provider.on_shutdown(state.shutdown)
    return provider
