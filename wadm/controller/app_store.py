"""Applications and ownership records in JetStream KV.

Bucket ``TRELLIS_<lattice>_apps`` (``subjects.bucket(lattice, "apps")``):

=================================================  ==========================================
key                                                value (JSON)
=================================================  ==========================================
``app.<name>``                                     `AppRecord`: versions, the deployed one
``manifest.<name>.<version>``                      the manifest of one version (canonical
                                                   data, image paths resolved)
``owner.link.<src>.<ns>.<pkg>.<name>.<target>``    ``{"app": NAME}``: the app that put the link
``owner.config.<name>``                            ``{"app": NAME}``: the app that put the config
=================================================  ==========================================

Tokens other than the app name are encoded with `interfaces.store.encode_token`
(``A-Z a-z 0-9 - _`` as they are, anything else as ``=XX`` per UTF-8 byte), so
any version, id or config name is one KV-safe token. Every change of a record is
a compare-and-set on its revision, so two writers can never lose each other's
change. Links and configs live in the lattice's own buckets (`interfaces.store`),
which have no room for an owner: the controller writes the owner record *before*
putting a link or config and removes it *after* deleting one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import ValidationError

from interfaces import subjects
from interfaces.errors import ErrorCode, TrellisError
from interfaces.store import StoreSettings, decode_token, encode_token
# The lattice store's own ordered-consumer watch: it ends the snapshot correctly (nats-py's
# KeyValue.watch can report it complete too early) and re-reads the bucket after a reconnect.
from interfaces.kv_watch import RESUBSCRIBED, BucketEntry
from interfaces.kv_watch import watch_bucket as bucket_watch

from .records import AppRecord
from .view import LinkIdentity

log = logging.getLogger(__name__)

APPS = "apps"
_CAS_ATTEMPTS = 25


class AppStoreError(TrellisError):
    pass


# --- keys (pure) -----------------------------------------------------------------------


def app_key(name: str) -> str:
    return f"app.{name}"


def manifest_key(name: str, version: str) -> str:
    return f"manifest.{name}.{encode_token(version)}"


def link_owner_key(identity: LinkIdentity) -> str:
    return "owner.link." + ".".join(encode_token(t) for t in identity)


def config_owner_key(name: str) -> str:
    return "owner.config." + encode_token(name)


def parse_owner_key(key: str) -> tuple[Literal["link"], LinkIdentity] | tuple[Literal["config"], str] | None:
    parts = key.split(".")
    try:
        if len(parts) == 7 and parts[:2] == ["owner", "link"]:
            s, ns, pkg, name, target = (decode_token(p) for p in parts[2:])
            return "link", (s, ns, pkg, name, target)
        if len(parts) == 3 and parts[:2] == ["owner", "config"]:
            return "config", decode_token(parts[2])
    except (ValueError, UnicodeDecodeError):
        pass
    return None


# --- watch output ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordChange:
    name: str
    record: AppRecord | None
    """None: deleted."""


@dataclass(frozen=True)
class OwnerChange:
    kind: Literal["link", "config"]
    key: Any
    """A `LinkIdentity` or a config name."""
    app: str | None


@dataclass(frozen=True)
class StoreSynced:
    what: Literal["apps", "owners"]


async def open_bucket(nc: Client, name: str, description: str, settings: StoreSettings,
                      ttl_s: float | None = None) -> KeyValue:
    """Bind to a KV bucket, creating it (with these settings) when it does not exist."""
    js = nc.jetstream(timeout=settings.timeout_s)
    try:
        try:
            return await js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            pass
        try:
            return await js.create_key_value(KeyValueConfig(
                bucket=name, history=1, replicas=settings.replicas, ttl=ttl_s, description=description))
        except nats.js.errors.BadRequestError:
            return await js.key_value(name)  # created by someone else meanwhile: use theirs
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
        raise AppStoreError(f"JetStream is not available on the NATS server (needed for {name}): "
                            "start nats-server with -js", ErrorCode.NO_RESPONDERS) from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise AppStoreError(f"JetStream did not answer within {settings.timeout_s}s opening bucket {name}",
                            ErrorCode.TIMEOUT) from None


class AppStore:
    """The apps bucket of one lattice."""

    def __init__(self, nc: Client, lattice: str, settings: StoreSettings | None = None) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.settings = settings or StoreSettings.from_env()
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def kv(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                self._kv = await open_bucket(self.nc, subjects.bucket(self.lattice, APPS),
                                             f"Trellis wadm applications of lattice {self.lattice}", self.settings)
            return self._kv

    # --- records -----------------------------------------------------------------------

    async def get(self, name: str) -> tuple[AppRecord | None, int]:
        """The record and its revision (0 and None when there is none)."""
        kv = await self.kv()
        try:
            entry = await kv.get(app_key(name))
        except nats.js.errors.KeyNotFoundError as exc:
            tomb = getattr(exc, "entry", None)
            return None, (tomb.revision if tomb is not None and tomb.revision else 0)
        return _decode_record(entry.key, entry.value or b""), entry.revision or 0

    async def change(self, name: str,
                     fn: Callable[[AppRecord | None], AppRecord | None]) -> tuple[AppRecord | None, AppRecord | None]:
        """Apply `fn` to the record with compare-and-set; returns (before, after). `fn` may raise."""
        kv = await self.kv()
        for _ in range(_CAS_ATTEMPTS):
            before, revision = await self.get(name)
            after = fn(before)
            if after == before:
                return before, after
            try:
                if after is None:
                    await kv.delete(app_key(name), last=revision or None)
                elif before is None:
                    await kv.create(app_key(name), after.model_dump_json().encode())
                else:
                    await kv.update(app_key(name), after.model_dump_json().encode(), last=revision)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code in (10071, 10164):  # wrong last sequence / key exists
                    continue
                raise
            return before, after
        raise AppStoreError(f"application {name!r} kept changing; try again", ErrorCode.CONFLICT)

    async def records(self) -> dict[str, AppRecord]:
        """Every record, read now."""
        await self.kv()
        out: dict[str, AppRecord] = {}
        async for entry in bucket_watch(self.nc, subjects.bucket(self.lattice, APPS), "app.*",
                                        ignore_deletes=True, resubscribe=False):
            if entry is None:
                break
            if isinstance(entry, BucketEntry):
                rec = _decode_record(entry.key, entry.value)
                if rec is not None:
                    out[rec.name] = rec
        return out

    # --- manifests ---------------------------------------------------------------------

    async def put_manifest(self, name: str, version: str, data: dict[str, Any]) -> None:
        kv = await self.kv()
        await kv.put(manifest_key(name, version), json.dumps(data, sort_keys=True).encode())

    async def get_manifest(self, name: str, version: str) -> dict[str, Any] | None:
        kv = await self.kv()
        try:
            entry = await kv.get(manifest_key(name, version))
        except nats.js.errors.KeyNotFoundError:
            return None
        try:
            data = json.loads(entry.value or b"")
        except ValueError:
            log.warning("unreadable manifest %s %s in the store", name, version)
            return None
        return data if isinstance(data, dict) else None

    async def delete_manifests(self, name: str, versions: list[str]) -> None:
        kv = await self.kv()
        for v in versions:
            try:
                await kv.purge(manifest_key(name, v))
            except nats.js.errors.KeyNotFoundError:
                pass

    # --- owners ------------------------------------------------------------------------

    async def set_link_owner(self, identity: LinkIdentity, app: str) -> None:
        kv = await self.kv()
        await kv.put(link_owner_key(identity), json.dumps({"app": app}).encode())

    async def clear_link_owner(self, identity: LinkIdentity) -> None:
        await self._clear(link_owner_key(identity))

    async def set_config_owner(self, name: str, app: str) -> None:
        kv = await self.kv()
        await kv.put(config_owner_key(name), json.dumps({"app": app}).encode())

    async def clear_config_owner(self, name: str) -> None:
        await self._clear(config_owner_key(name))

    async def _clear(self, key: str) -> None:
        kv = await self.kv()
        try:
            await kv.purge(key)
        except nats.js.errors.KeyNotFoundError:
            pass

    # --- watching ----------------------------------------------------------------------

    async def watch_records(self) -> AsyncIterator[RecordChange | StoreSynced]:
        """Every record, `StoreSynced("apps")`, then changes (re-read after a reconnect)."""
        async for key, value in self._watch_keys("app.*", "apps"):
            if isinstance(value, StoreSynced):
                yield value
                continue
            name = key.split(".", 1)[1]
            yield RecordChange(name, None if value is None else _decode_record(key, value))

    async def watch_owners(self) -> AsyncIterator[OwnerChange | StoreSynced]:
        """Every ownership record, `StoreSynced("owners")`, then changes (re-read after a reconnect)."""
        async for key, value in self._watch_keys("owner.>", "owners"):
            if isinstance(value, StoreSynced):
                yield value
                continue
            parsed = parse_owner_key(key)
            if parsed is None:
                continue
            app: str | None = None
            if value is not None:
                try:
                    app = str(json.loads(value)["app"])
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring unreadable owner record %s", key)
                    continue
            yield OwnerChange(parsed[0], parsed[1], app)

    async def _watch_keys(self, pattern: str, what: Literal["apps", "owners"]
                          ) -> AsyncIterator[tuple[str, bytes | StoreSynced | None]]:
        """(key, value) for every key matching `pattern`, then (``""``, StoreSynced), then changes;
        value None is a deletion. After a reconnect the keys are read again and keys that went
        away meanwhile come out as deletions, so the caller never keeps a stale entry."""
        await self.kv()
        known: set[str] = set()
        fresh: set[str] | None = None
        synced = False
        async for entry in bucket_watch(self.nc, subjects.bucket(self.lattice, APPS), pattern):
            if entry is RESUBSCRIBED:
                fresh = set()
                continue
            if entry is None:
                if fresh is not None:
                    for key in sorted(known - fresh):
                        known.discard(key)
                        yield key, None
                    fresh = None
                if not synced:
                    synced = True
                    yield "", StoreSynced(what)
                continue
            assert isinstance(entry, BucketEntry)
            if fresh is not None:
                fresh.add(entry.key)
            if entry.deleted:
                known.discard(entry.key)
                yield entry.key, None
            else:
                known.add(entry.key)
                yield entry.key, entry.value


def _decode_record(key: str, data: bytes) -> AppRecord | None:
    try:
        return AppRecord.model_validate_json(data)
    except ValidationError as exc:
        log.warning("ignoring unreadable application record %s: %s", key, exc)
        return None
