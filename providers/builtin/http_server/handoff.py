"""The provider's side of connection handoff (``trellis/samehost/handoff.py``): which worker takes a connection.

A listener's connection goes to a worker of this host that serves every
component the listener routes to (workers say which, and when it changes);
among several, they take turns. When none does, or the worker cannot take it
now, the provider serves the connection itself, over NATS, as always. The
provider keeps each worker told of the listeners it was handed connections for:
their routes when they change, and when they close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trellis.samehost import handoff

if TYPE_CHECKING:
    from trellis.httpfront.listener import Listener

log = logging.getLogger("trellis.providers.http_server")

#: how often workers not connected are tried again
RECONNECT_S = 1.0


class _Worker:
    __slots__ = ("address", "channel", "serving", "known")

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel: handoff.Channel | None = None
        self.serving: frozenset[str] = frozenset()
        #: listener id -> the route table this worker was last told
        self.known: dict[int, Any] = {}

    @property
    def alive(self) -> bool:
        return self.channel is not None and not self.channel.closed


class Handoff:
    """Hands a listener's accepted connections to this host's workers (see the module doc)."""

    def __init__(self, addresses: Sequence[str], source: str) -> None:
        self.workers = [_Worker(a) for a in addresses]
        self.source = source
        self.stats = {"handed": 0, "kept": 0}
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()  # a channel closed: the reconnect loop sleeps on it while all are up

    async def start(self) -> None:
        self._connect_all()
        self._task = asyncio.get_running_loop().create_task(self._reconnect())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for w in self.workers:
            if w.channel is not None:
                w.channel.close()

    def _connect_all(self) -> None:
        for w in self.workers:
            if w.alive:
                continue
            try:
                sock = handoff.connect(w.address)
            except OSError:
                continue
            w.known = {}
            w.serving = frozenset()
            w.channel = handoff.Channel(sock, functools.partial(self._on_message, w),
                                        functools.partial(self._on_close, w))

    async def _reconnect(self) -> None:
        """Every RECONNECT_S while a worker is not connected; otherwise it waits for a channel to close."""
        while True:
            if all(w.alive for w in self.workers):
                self._lost.clear()
                if all(w.alive for w in self.workers):
                    await self._lost.wait()
            await asyncio.sleep(RECONNECT_S)
            self._connect_all()

    @staticmethod
    def _on_message(w: _Worker, msg: dict[str, Any], fds: list[int]) -> None:
        handoff.close_fds(fds)  # workers send none
        if msg.get("op") == "serving":
            w.serving = frozenset(msg.get("components") or ())

    def _on_close(self, w: _Worker) -> None:
        w.serving = frozenset()
        w.known = {}
        self._lost.set()

    # --- connections ----------------------------------------------------------------------

    def take(self, listener: Listener, sock: Any) -> bool:
        """Hand ``sock`` (accepted by ``listener``) to a worker; False to serve it here."""
        targets = listener.table.targets
        ready = [w for w in self.workers if w.alive and targets <= w.serving]
        if not ready:
            self.stats["kept"] += 1
            return False
        w = ready[next(self._turn) % len(ready)]
        assert w.channel is not None
        if w.known.get(listener.id) is not listener.table and not self._tell(w, listener):
            self.stats["kept"] += 1
            return False
        if not w.channel.send({"op": "conn", "listener": listener.id}, [sock.fileno()]):
            self.stats["kept"] += 1
            return False
        self.stats["handed"] += 1
        return True

    def _tell(self, w: _Worker, listener: Listener) -> bool:
        assert w.channel is not None
        table = listener.table
        ok = w.channel.send({
            "op": "listener", "id": listener.id, "address": list(listener.address), "source": self.source,
            "settings": dataclasses.asdict(listener.settings),
            "routes": [r.to_wire() for r in table.routes],
        })
        if ok:
            w.known[listener.id] = table
        return ok

    def changed(self, listener: Listener) -> None:
        """``listener``'s routes changed: the workers it handed connections to learn the new ones."""
        for w in self.workers:
            if w.alive and listener.id in w.known and not self._tell(w, listener):
                self._forget(w, listener.id)

    def closed(self, listener: Listener) -> None:
        """``listener`` closed: workers close its connections once their answers are written."""
        for w in self.workers:
            if w.alive and listener.id in w.known:
                self._forget(w, listener.id)

    @staticmethod
    def _forget(w: _Worker, listener_id: int) -> None:
        w.known.pop(listener_id, None)
        if w.channel is not None and not w.channel.send({"op": "close", "id": listener_id}):
            w.channel.close()  # it cannot be told: it drops every connection it was handed

    def describe(self) -> str:
        alive = sum(w.alive for w in self.workers)
        return f"{self.stats['handed']} connections handed to workers ({alive}/{len(self.workers)} reachable)"
