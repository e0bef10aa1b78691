"""The HTTP front: the listeners the links ask for, kept in step with them.

Level-triggered: every change (a link put or deleted, config updated) and a
timer while anything is failing run the same :meth:`HttpFront.reconcile`,
which plans from all links (:func:`.routes.plan`, no I/O) and then opens,
re-routes and closes listeners to match. A port that cannot be bound (in use,
no permission) is retried every ``RETRY_S`` and reported by :meth:`health`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any

from trellis.httpfront.config import ServerConfig, format_address
from trellis.httpfront.listener import Caller, Listener
from trellis.httpfront.routes import LinkKey, Route, plan
from trellis.kit.service import Service

log = logging.getLogger("trellis.providers.http_server")

RETRY_S = 2.0
#: how long requests in progress may finish when their listener closes
CLOSE_GRACE_S = 5.0


def streams_over_nats(route: Route) -> bool:
    """A wasi:http component's route is served as streams over NATS (``trellis/httpfront/relay.py``)."""
    return route.key[1:2] == ("wasi",)


class HttpFront(Service):
    name = "http-front"

    def __init__(self, caller: Caller, settings: ServerConfig | None = None, handoff: Any = None,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.caller = caller
        #: HTTPS on every listener (:mod:`.tls`); None serves plain HTTP
        self.tls = tls
        self.settings = settings or ServerConfig()
        #: hands accepted connections to this host's workers (:mod:`.handoff`); None: never
        self.handoff = handoff
        self.listeners: dict[tuple[str, int], Listener] = {}
        #: address -> why it could not be opened (retried)
        self.bind_errors: dict[tuple[str, int], str] = {}
        #: link -> why it is not served (bad config, or a clash with another link)
        self.refused: dict[LinkKey, str] = {}
        self._routes: dict[LinkKey, Route] = {}
        self._invalid: dict[LinkKey, str] = {}
        self._lock = asyncio.Lock()
        self._failed_binds = asyncio.Event()  # the retry loop sleeps on it while every address listens

    async def _start(self) -> None:
        self.tasks.spawn(self._retry_loop(), "retry-binds")

    async def _close(self) -> None:
        async with self._lock:
            listeners, self.listeners = list(self.listeners.values()), {}
            await asyncio.gather(*(lst.close(CLOSE_GRACE_S) for lst in listeners))

    # --- desired state --------------------------------------------------------------------

    def put(self, key: LinkKey, route: Route | str) -> None:
        """Serve ``route`` for link ``key`` (or record why it cannot be served)."""
        self._routes.pop(key, None)
        self._invalid.pop(key, None)
        if isinstance(route, Route):
            self._routes[key] = route
        else:
            self._invalid[key] = route

    def delete(self, key: LinkKey) -> None:
        self._routes.pop(key, None)
        self._invalid.pop(key, None)

    @property
    def routes(self) -> dict[LinkKey, Route]:
        return dict(self._routes)

    # --- reconciling -------------------------------------------------------------------

    async def reconcile(self) -> None:
        async with self._lock:
            if self.status.value in ("closing", "closed"):
                return
            want = plan(self._routes.values(), self._invalid)
            for key, why in want.refused.items():
                if self.refused.get(key) != why:
                    log.error("link %s is not served: %s", "/".join(key), why)
            self.refused = want.refused
            for address in [a for a in self.listeners if a not in want.listeners]:
                gone = self.listeners.pop(address)
                log.info("closing listener %s", gone.text)
                gone.stop_accepting()  # the port is free when reconcile returns
                self.tasks.spawn(gone.close(CLOSE_GRACE_S), f"close-{gone.text}")
            for address in [a for a in self.bind_errors if a not in want.listeners]:
                del self.bind_errors[address]
            for address, table in want.listeners.items():
                existing = self.listeners.get(address)
                if existing is not None:
                    existing.table = table  # requests in progress keep the route they matched
                    continue
                listener = Listener(address, table, self.caller, self.settings, self.handoff, self.tls)
                listener.streams = streams_over_nats
                try:
                    await listener.open()
                except OSError as exc:
                    # the errno's words ('Address already in use'), not asyncio's wrapping of them
                    why = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
                    if self.bind_errors.get(address) != why:
                        log.error("cannot listen on %s: %s (retrying every %.0fs)", format_address(address), why,
                                  RETRY_S)
                    self.bind_errors[address] = why
                    self._failed_binds.set()
                    continue
                self.bind_errors.pop(address, None)
                self.listeners[address] = listener
                log.info("listening on %s: %s", listener.text, "; ".join(r.describe() for r in table.routes))

    async def _retry_loop(self) -> None:
        """Every RETRY_S while an address could not be opened; otherwise it waits for one."""
        while True:
            if not self.bind_errors:
                self._failed_binds.clear()
                await self._failed_binds.wait()
            await asyncio.sleep(RETRY_S)
            if self.bind_errors:
                await self.reconcile()

    # --- health -----------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Healthy when every address the links ask for is listening and every link is served."""
        parts = [f"{lst.text} ({len(lst.table)} route{'s' if len(lst.table) != 1 else ''}, "
                 f"{len(lst.connections)} open)" for lst in self.listeners.values()]
        problems = [f"cannot listen on {format_address(a)}: {why}" for a, why in self.bind_errors.items()]
        problems += [f"link {'/'.join(k)}: {why}" for k, why in self.refused.items()]
        # links whose address could not be opened are no "no links": say what is listening, if anything
        idle = "not listening" if self.bind_errors else "no listeners (no links)"
        summary = ("listening on " + ", ".join(parts)) if parts else idle
        if self.handoff is not None and parts:
            summary += "; " + self.handoff.describe()
        if problems:
            return False, summary + "; " + "; ".join(problems)
        return True, summary
