"""LatticeStore: links and named config, kept durably in JetStream KV.

Two buckets per lattice, named by :func:`trellis.interfaces.subjects.bucket`:

``TRELLIS_<lattice>_links``
    key ``<source>.<namespace>.<package>.<link name>`` (each token encoded, see
    below); value: a JSON list of the links of that group, sorted by target —
    normally one, several only when they go to different targets for disjoint
    interfaces. Keeping a whole group under one key makes the conflict check
    atomic: every write is a compare-and-set on the key's revision.
``TRELLIS_<lattice>_config``
    key ``<config name>`` (encoded); value: the config as a JSON object of
    string → string.

Key tokens are encoded so any id or name is KV-safe and one token long:
``A-Z a-z 0-9 - _`` stay as they are; every other character becomes ``=`` and
two upper-case hex digits per UTF-8 byte (``my.config`` → ``my=2Econfig``).

Every change is also announced as an event (``linkdef_set``, ``linkdef_deleted``,
``config_set``, ``config_deleted``) on ``subjects.event(...)``; ``watch_links``,
``watch_config`` and ``watch`` give the changes as an async iterator to hosts
and providers that must react (the current state first, then a :class:`Synced`
marker, then changes as they happen; after a reconnect they read the buckets
again and yield only what differs, so nothing changed meanwhile is missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import ValidationError

from . import subjects
from .errors import ErrorCode, TrellisError
from .events import Event, EventType
from .kv_watch import RESUBSCRIBED, BucketEntry, watch_bucket
from .lattice_config import check_config_name, check_config_values, merge_configs
from .links import DEFAULT_LINK_NAME, Link, check_conflicts, check_link_name, check_wit_id

log = logging.getLogger(__name__)

LINKS: Literal["links"] = "links"
CONFIG: Literal["config"] = "config"
_SAFE = re.compile(r"[A-Za-z0-9_\-]")
_CAS_ATTEMPTS = 25


class StoreError(TrellisError):
    """A store operation failed; ``code`` says how (not_found, conflict, bad_request, …)."""


@dataclass
class StoreSettings:
    """How the buckets are created (only the first creator's settings count)."""

    replicas: int = field(default=1, metadata={"doc": "JetStream replicas of every bucket Trellis makes "
                                                       "(links, config, apps, lease, artifacts); 1 on one "
                                                       "server, 3 in a cluster of 3+ so nothing is lost with "
                                                       "a server (TRELLIS_KV_REPLICAS)"})
    history: int = field(default=1, metadata={"doc": "revisions kept per key; 1 is enough, the current "
                                                      "value is what matters (TRELLIS_KV_HISTORY)"})
    timeout_s: float = field(default=5.0, metadata={"doc": "JetStream API timeout in seconds"})

    @classmethod
    def from_env(cls, **overrides: Any) -> StoreSettings:
        values: dict[str, Any] = {}
        if os.environ.get("TRELLIS_KV_REPLICAS"):
            values["replicas"] = int(os.environ["TRELLIS_KV_REPLICAS"])
        if os.environ.get("TRELLIS_KV_HISTORY"):
            values["history"] = int(os.environ["TRELLIS_KV_HISTORY"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**values)
        if not 1 <= s.history <= 64:
            raise ValueError(f"KV history must be 1-64, got {s.history}")
        if not 1 <= s.replicas <= 5:
            raise ValueError(f"KV replicas must be 1-5, got {s.replicas}")
        return s


# --- changes a watcher yields ----------------------------------------------------------

@dataclass(frozen=True)
class LinkChange:
    kind: Literal["put", "deleted"]
    link: Link
    revision: int = 0


@dataclass(frozen=True)
class ConfigChange:
    kind: Literal["put", "deleted"]
    name: str
    values: dict[str, str]
    revision: int = 0


@dataclass(frozen=True)
class Synced:
    """Everything stored when the watch began has been yielded; changes follow."""

    bucket: Literal["links", "config"]


Change = LinkChange | ConfigChange | Synced


# --- keys ----------------------------------------------------------------------------------

def encode_token(text: str) -> str:
    if not text:
        raise ValueError("a key token cannot be empty")
    return "".join(c if _SAFE.match(c) else "".join(f"={b:02X}" for b in c.encode()) for c in text)


def decode_token(token: str) -> str:
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            out += bytes.fromhex(token[i + 1:i + 3])
            i += 3
        else:
            out += token[i].encode()
            i += 1
    return out.decode()


def link_key(source_id: str, namespace: str, package: str, name: str = DEFAULT_LINK_NAME) -> str:
    return ".".join(encode_token(t) for t in (source_id, namespace, package, name))


def config_key(name: str) -> str:
    return encode_token(name)


def _encode_group(links: Iterable[Link]) -> bytes:
    return json.dumps([lk.model_dump(mode="json") for lk in sorted(links, key=lambda x: x.target)]).encode()


def _decode_group(key: str, data: bytes) -> list[Link]:
    try:
        raw = json.loads(data)
        if not isinstance(raw, list):
            raise ValueError("not a list")
        return [Link.model_validate(item) for item in raw]
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring unreadable link entry %r: %s", key, exc)
        return []


def _decode_config(key: str, data: bytes) -> dict[str, str] | None:
    try:
        raw = json.loads(data)
        return check_config_values(decode_token(key), raw)
    except (ValueError, TrellisError) as exc:
        log.warning("ignoring unreadable config entry %r: %s", key, exc)
        return None


# --- the store -----------------------------------------------------------------------------

class LatticeStore:
    """Links and config of one lattice. Buckets are bound (or created) on first use."""

    def __init__(self, nc: Client, lattice: str, *, source: str = "trellis",
                 settings: StoreSettings | None = None) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.source = source
        self.settings = settings or StoreSettings.from_env()
        self._kv: dict[str, KeyValue] = {}
        self._open_lock = asyncio.Lock()

    # --- buckets ---------------------------------------------------------------------

    async def bucket(self, what: str) -> KeyValue:
        kv = self._kv.get(what)
        if kv is not None:
            return kv
        async with self._open_lock:
            if what not in self._kv:
                self._kv[what] = await self._open(what)
            return self._kv[what]

    async def _open(self, what: str) -> KeyValue:
        name = subjects.bucket(self.lattice, what)
        js = self.nc.jetstream(timeout=self.settings.timeout_s)
        try:
            try:
                return await js.key_value(name)
            except nats.js.errors.BucketNotFoundError:
                pass
            try:
                return await js.create_key_value(KeyValueConfig(
                    bucket=name, history=self.settings.history, replicas=self.settings.replicas,
                    description=f"Trellis {what} of lattice {self.lattice}",
                ))
            except nats.js.errors.BadRequestError:
                # created by someone else meanwhile, possibly with other settings: use theirs
                return await js.key_value(name)
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise StoreError(f"JetStream is not available on the NATS server (needed for {what}): "
                             "start nats-server with -js", ErrorCode.NO_RESPONDERS) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise StoreError(f"JetStream did not answer within {self.settings.timeout_s}s opening bucket "
                             f"{name}", ErrorCode.TIMEOUT) from None

    async def _publish(self, event_type: str, data: dict[str, Any]) -> None:
        ev = Event.new(event_type, source=self.source, data=data)
        try:
            await self.nc.publish(subjects.event(self.lattice, event_type), ev.encode())
        except Exception as exc:  # the write happened; a lost event must not undo it
            log.warning("could not publish %s: %r", event_type, exc)

    # --- links -----------------------------------------------------------------------

    async def put_link(self, link: Link) -> Link:
        """Store ``link`` (replacing one with the same identity). Raises on conflict."""
        link = Link.model_validate(link.model_dump())  # re-validate: models are mutable
        kv = await self.bucket(LINKS)
        key = link_key(*link.group)
        for _ in range(_CAS_ATTEMPTS):
            current, revision = await self._get_group(kv, key)
            others = [lk for lk in current if lk.target != link.target]
            check_conflicts(others, link)
            if link in current:
                return link  # unchanged: no write, no event
            try:
                await self._cas(kv, key, _encode_group([*others, link]), revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # somebody wrote the group meanwhile: check again
            await self._publish(EventType.LINKDEF_SET, link.model_dump(mode="json"))
            return link
        raise StoreError(f"link {link.describe()} was not stored: the group kept changing", ErrorCode.CONFLICT)

    async def delete_link(self, source_id: str, namespace: str, package: str,
                          name: str = DEFAULT_LINK_NAME, target: str | None = None) -> list[Link]:
        """Delete the links of a source, namespace, package and name (only to ``target`` if given).

        Returns the links removed (empty when there were none): deleting is idempotent.
        """
        try:
            subjects.check_id("source", source_id)
            check_wit_id("WIT namespace", namespace)
            check_wit_id("WIT package", package)
            check_link_name(name)
            if target is not None:
                subjects.check_id("target", target)
        except ValueError as exc:
            raise StoreError(str(exc), ErrorCode.BAD_REQUEST) from None
        kv = await self.bucket(LINKS)
        key = link_key(source_id, namespace, package, name)
        for _ in range(_CAS_ATTEMPTS):
            current, revision = await self._get_group(kv, key)
            gone = [lk for lk in current if target is None or lk.target == target]
            if not gone:
                return []
            kept = [lk for lk in current if lk not in gone]
            try:
                if kept:
                    await self._cas(kv, key, _encode_group(kept), revision)
                else:
                    await kv.delete(key, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code in (10071, 10164):
                    continue
                raise
            for lk in gone:
                await self._publish(EventType.LINKDEF_DELETED, lk.model_dump(mode="json"))
            return gone
        raise StoreError(f"links of {source_id} {namespace}:{package} were not deleted: the group kept changing",
                         ErrorCode.CONFLICT)

    async def list_links(self, source: str | None = None, target: str | None = None) -> list[Link]:
        pattern = f"{encode_token(source)}.>" if source else ">"
        out: list[Link] = []
        for entry in await self._snapshot(LINKS, pattern):
            out += [lk for lk in _decode_group(entry.key, entry.value)
                    if target is None or lk.target == target]
        return sorted(out, key=lambda lk: lk.identity)

    async def _get_group(self, kv: KeyValue, key: str) -> tuple[list[Link], int]:
        """The links under ``key`` and the revision to compare-and-set against (0: absent)."""
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError as exc:
            # a deleted key: its tombstone's revision (nats-py puts the entry on the error)
            deleted = getattr(exc, "entry", None)
            return [], (deleted.revision if deleted is not None and deleted.revision else 0)
        return _decode_group(key, entry.value or b""), entry.revision or 0

    @staticmethod
    async def _cas(kv: KeyValue, key: str, value: bytes, revision: int) -> None:
        if revision:
            await kv.update(key, value, last=revision)
        else:
            await kv.create(key, value)

    # --- config ----------------------------------------------------------------------

    async def put_config(self, name: str, values: Mapping[str, str]) -> dict[str, str]:
        """Store (replace) the named config."""
        check_config_name(name)
        clean = check_config_values(name, values)
        kv = await self.bucket(CONFIG)
        await kv.put(config_key(name), json.dumps(clean).encode())
        await self._publish(EventType.CONFIG_SET, {"config_name": name, "keys": sorted(clean)})
        return clean

    async def get_config(self, name: str) -> dict[str, str]:
        """The named config; raises StoreError(not_found) when there is none."""
        found = await self.find_config(name)
        if found is None:
            raise StoreError(f"config {name!r} not found in lattice {self.lattice!r}", ErrorCode.NOT_FOUND)
        return found

    async def find_config(self, name: str) -> dict[str, str] | None:
        check_config_name(name)
        kv = await self.bucket(CONFIG)
        try:
            entry = await kv.get(config_key(name))
        except nats.js.errors.KeyNotFoundError:
            return None
        return _decode_config(entry.key, entry.value or b"")

    async def delete_config(self, name: str) -> bool:
        """Delete the named config; False when there was none."""
        check_config_name(name)
        kv = await self.bucket(CONFIG)
        try:
            await kv.get(config_key(name))
        except nats.js.errors.KeyNotFoundError:
            return False
        await kv.delete(config_key(name))
        await self._publish(EventType.CONFIG_DELETED, {"config_name": name})
        return True

    async def list_configs(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for entry in await self._snapshot(CONFIG, ">"):
            values = _decode_config(entry.key, entry.value)
            if values is not None:
                out[decode_token(entry.key)] = values
        return dict(sorted(out.items()))

    async def resolve_config(self, names: Iterable[str]) -> dict[str, str]:
        """Merge the named configs in order (later names win); missing names count as empty."""
        found = []
        for n in names:
            values = await self.find_config(n)
            if values is None:
                log.debug("config %r is referenced but not stored", n)
            else:
                found.append(values)
        return merge_configs(found)

    # --- watching --------------------------------------------------------------------

    async def watch_links(self, *, source: str | None = None, target: str | None = None,
                          include_existing: bool = True) -> AsyncGenerator[LinkChange | Synced, None]:
        """Link changes (optionally only for a source / target): current links, Synced, then changes.

        After a reconnect the bucket is read again and only real differences are
        yielded, so a consumer never misses a change made while NATS was away.
        """
        await self.bucket(LINKS)
        pattern = f"{encode_token(source)}.>" if source else ">"
        known: dict[str, dict[tuple[str, str, str, str, str], Link]] = {}
        synced = False
        fresh: set[str] | None = None  # keys seen since a resubscription
        async for entry in watch_bucket(self.nc, subjects.bucket(self.lattice, LINKS), pattern):
            if entry is RESUBSCRIBED:
                fresh = set()
                continue
            if entry is None:
                if fresh is not None:  # keys gone while we were away
                    for key in [k for k in known if k not in fresh]:
                        for lk in known.pop(key).values():
                            yield LinkChange("deleted", lk)
                    fresh = None
                if not synced:
                    synced = True
                    yield Synced(LINKS)
                continue
            assert isinstance(entry, BucketEntry)
            if fresh is not None:
                fresh.add(entry.key)
            old = known.get(entry.key, {})
            new = {} if entry.deleted else {
                lk.identity: lk for lk in _decode_group(entry.key, entry.value)
                if target is None or lk.target == target
            }
            if new:
                known[entry.key] = new
            else:
                known.pop(entry.key, None)
            if not synced and not include_existing:
                continue
            rev = entry.revision
            for ident, lk in old.items():
                if ident not in new:
                    yield LinkChange("deleted", lk, rev)
            for ident, lk in new.items():
                if old.get(ident) != lk:
                    yield LinkChange("put", lk, rev)

    async def watch_config(self, *, include_existing: bool = True) -> AsyncGenerator[ConfigChange | Synced, None]:
        """Config changes: current configs, Synced, then changes (re-read after a reconnect)."""
        await self.bucket(CONFIG)
        known: dict[str, dict[str, str]] = {}
        synced = False
        fresh: set[str] | None = None
        async for entry in watch_bucket(self.nc, subjects.bucket(self.lattice, CONFIG), ">"):
            if entry is RESUBSCRIBED:
                fresh = set()
                continue
            if entry is None:
                if fresh is not None:
                    for name in [n for n in known if n not in fresh]:
                        del known[name]
                        yield ConfigChange("deleted", name, {})
                    fresh = None
                if not synced:
                    synced = True
                    yield Synced(CONFIG)
                continue
            assert isinstance(entry, BucketEntry)
            name = decode_token(entry.key)
            if fresh is not None:
                fresh.add(name)
            values = None if entry.deleted else _decode_config(entry.key, entry.value)
            before = known.get(name)
            if values is None:
                known.pop(name, None)
            else:
                known[name] = values
            if (not synced and not include_existing) or before == values:
                continue
            if values is None:
                yield ConfigChange("deleted", name, {}, entry.revision)
            else:
                yield ConfigChange("put", name, values, entry.revision)

    async def watch(self, *, include_existing: bool = True) -> AsyncGenerator[Change, None]:
        """Links and config changes merged (two Synced markers, one per bucket)."""
        queue: asyncio.Queue[tuple[Change | None, BaseException | None]] = asyncio.Queue()

        async def pump(it: AsyncGenerator[Any, None]) -> None:
            try:
                async with contextlib.aclosing(it):
                    async for change in it:
                        await queue.put((change, None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await queue.put((None, exc))

        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(pump(self.watch_links(include_existing=include_existing)), name="watch-links"),
            loop.create_task(pump(self.watch_config(include_existing=include_existing)), name="watch-config"),
        ]
        try:
            while True:
                change, exc = await queue.get()
                if exc is not None:
                    raise exc
                assert change is not None
                yield change
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- helpers ---------------------------------------------------------------------

    async def _snapshot(self, what: str, pattern: str) -> list[BucketEntry]:
        await self.bucket(what)
        out: list[BucketEntry] = []
        async for entry in watch_bucket(self.nc, subjects.bucket(self.lattice, what), pattern, ignore_deletes=True,
                                  resubscribe=False):
            if entry is None:
                break
            assert isinstance(entry, BucketEntry)
            out.append(entry)
        return out
