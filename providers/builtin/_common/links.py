"""Per-link state of a built-in provider, keyed by the linked component and the link name.

``on_link_put`` builds the state from the link's config merged over the
provider's own (:meth:`LinkTable.put`); ``on_link_deleted`` tears it down; a
call finds it with :meth:`LinkTable.for_call`. A call can arrive a moment
before this instance has seen the link (the caller's host saw it first): the
call carries the link and its config, so the state is built then, the same way.

A call can also arrive before this instance has seen its link *at all* (the
link was put a moment ago, and the caller's host read it first): a call
without a link waits up to :data:`LINK_GRACE_S` for ``on_link_put`` before it
is refused.

Builds do no I/O (connections are opened on first use, see
:mod:`.shared`), so a backend that is down never fails a link; a config that
cannot be used does: the link is kept with its error, and every call over it
gets that error until the config is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from trellis.providers.sdk import Link

from .config import ConfigError, merged

S = TypeVar("S")
LinkKey = tuple[str, str]

#: how long a call from an unknown caller waits for its link to arrive before it is refused
LINK_GRACE_S = 1.0

log = logging.getLogger("trellis.providers.builtin")


class NotLinked(Exception):
    """The caller has no link to this provider for the interface it called."""


class LinkUnusable(Exception):
    """The link's config cannot be used; the message says why."""


def link_key(link: Link, provider_id: str) -> LinkKey:
    """(the other side of the link, link name)."""
    peer = link.target if link.source_id == provider_id else link.source_id
    return (peer, link.name)


@dataclass
class _Slot(Generic[S]):
    link: Link
    provider_id: str
    link_config: dict[str, str]
    config: dict[str, str]
    state: S | None = None
    error: str = ""


class LinkTable(Generic[S]):
    """The state of every link of one kind (e.g. components calling the provider)."""

    def __init__(self, what: str, build: Callable[[Link, dict[str, str]], Awaitable[S]],
                 close: Callable[[S], Awaitable[None]]) -> None:
        self.what = what
        self._build = build
        self._close = close
        #: the provider's own config, under every link's (kept current by the provider's callbacks)
        self.base: dict[str, str] = {}
        self._slots: dict[LinkKey, _Slot[S]] = {}
        self._locks: dict[LinkKey, asyncio.Lock] = {}
        self._arrivals: dict[LinkKey, asyncio.Event] = {}  # calls waiting for their link
        self._waiting: dict[LinkKey, int] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def states(self) -> list[tuple[LinkKey, S]]:
        return [(k, s.state) for k, s in sorted(self._slots.items()) if s.state is not None]

    def errors(self) -> dict[LinkKey, str]:
        return {k: s.error for k, s in sorted(self._slots.items()) if s.error}

    async def put(self, link: Link, link_config: Mapping[str, str], provider_id: str) -> S:
        """Build (or rebuild, when its config changed) the state of ``link``; raises LinkUnusable."""
        key = link_key(link, provider_id)
        config = merged(self.base, link_config)
        async with self._locks.setdefault(key, asyncio.Lock()):
            slot = self._slots.get(key)
            if slot is not None and slot.link == link and slot.config == config:
                if slot.error:
                    raise LinkUnusable(slot.error)
                assert slot.state is not None
                return slot.state
            new = _Slot[S](link, provider_id, dict(link_config), config)
            try:
                new.state = await self._build(link, config)
            except ConfigError as exc:
                new.error = f"link {link.describe()}: {exc}"
            self._slots[key] = new
            arrived = self._arrivals.pop(key, None)
            if arrived is not None:
                arrived.set()
            if slot is not None and slot.state is not None:
                await self._safe_close(slot.state)
        if new.error:
            log.error("%s: %s", self.what, new.error)
            raise LinkUnusable(new.error)
        assert new.state is not None
        return new.state

    async def delete(self, link: Link, provider_id: str) -> None:
        key = link_key(link, provider_id)
        async with self._locks.setdefault(key, asyncio.Lock()):
            slot = self._slots.get(key)
            if slot is None or slot.link.identity != link.identity:
                return
            del self._slots[key]
            if slot.state is not None:
                await self._safe_close(slot.state)

    async def rebase(self, base: Mapping[str, str]) -> None:
        """The provider's own config changed: rebuild the links whose merged config changes."""
        if dict(base) == self.base:
            return
        self.base = dict(base)
        for slot in list(self._slots.values()):
            try:
                await self.put(slot.link, slot.link_config, slot.provider_id)
            except LinkUnusable:
                pass  # logged by put

    def named(self, peer: str, link_name: str) -> S | None:
        """The usable state of ``peer``'s link named ``link_name``, if this instance has it."""
        slot = self._slots.get((peer, link_name))
        return slot.state if slot is not None and not slot.error else None

    async def for_call(self, ctx: Any) -> S:
        """The state for the link a call came over; raises NotLinked or LinkUnusable."""
        key = (ctx.source, ctx.link_name)
        slot = self._slots.get(key)
        link = ctx.link
        if link is not None:
            # the SDK hands over the very Link object on_link_put got: identity first (no field compare)
            if slot is not None and slot.state is not None and (slot.link is link or slot.link == link):
                return slot.state
            return await self.put(link, ctx.config, ctx.provider_id)
        if slot is None:  # maybe the link is on its way: give on_link_put a moment
            await self._await_arrival(key, min(LINK_GRACE_S, max(0.0, ctx.remaining_s() / 2)))
            slot = self._slots.get(key)
        if slot is not None and slot.state is not None:
            return slot.state
        if slot is not None and slot.error:
            raise LinkUnusable(slot.error)
        raise NotLinked(f"{ctx.source} has no link to provider {ctx.provider_id} for {ctx.interface} "
                        f"(link name {ctx.link_name!r})")

    async def _await_arrival(self, key: LinkKey, timeout_s: float) -> None:
        arrived = self._arrivals.setdefault(key, asyncio.Event())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            await asyncio.wait_for(arrived.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # the last waiter: forget the key (callers without links come and go)
                del self._waiting[key]
                if self._arrivals.get(key) is arrived:
                    del self._arrivals[key]

    async def close_all(self) -> None:
        slots = list(self._slots.values())
        self._slots.clear()
        for slot in slots:
            if slot.state is not None:
                await self._safe_close(slot.state)

    async def _safe_close(self, state: S) -> None:
        try:
            await self._close(state)
        except Exception:
            log.exception("%s: tearing down link state failed", self.what)

