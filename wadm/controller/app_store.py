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
``owner.state.<app>.<provider id>``                ``{"app", "state_id", "host_id", "host_name",
                                                   "labels"}``: where a provider's local data lives
=================================================  ==========================================

Tokens other than the app name are encoded with `trellis.interfaces.store.encode_token`
(``A-Z a-z 0-9 - _`` as they are, anything else as ``=XX`` per UTF-8 byte), so
any version, id or config name is one KV-safe token. Every change of a record is
a compare-and-set on its revision, so two writers can never lose each other's
change. Links and configs live in the lattice's own buckets (`trellis.interfaces.store`),
which have no room for an owner: the controller writes the owner record *before*
putting a link or config and removes it *after* deleting one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import ValidationError

from trellis.interfaces import subjects
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.jetstream_errors import JS_NOT_ENABLED_FOR_ACCOUNT, describe, transient

# The lattice store's own ordered-consumer watch: it ends the snapshot correctly (nats-py's
# KeyValue.watch can report it complete too early) and re-reads the bucket after a reconnect.
from trellis.interfaces.kv_watch import RESUBSCRIBED, BucketEntry
from trellis.interfaces.kv_watch import watch_bucket as bucket_watch
from trellis.interfaces.store import StoreError, StoreSettings, decode_token, encode_token

from .records import AppRecord
from .view import LinkIdentity

log = logging.getLogger(__name__)

APPS = "apps"
_CAS_ATTEMPTS = 25
T = TypeVar("T")


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


def state_pin_key(app: str, provider_id: str) -> str:
    return f"owner.state.{encode_token(app)}.{encode_token(provider_id)}"


def parse_owner_key(key: str) -> (tuple[Literal["link"], LinkIdentity] | tuple[Literal["config"], str]
                                  | tuple[Literal["state"], tuple[str, str]] | None):
    parts = key.split(".")
    try:
        if len(parts) == 4 and parts[:2] == ["owner", "state"]:
            return "state", (decode_token(parts[2]), decode_token(parts[3]))
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
    """None: deleted (or unreadable)."""
    revision: int | None = None
    """The entry's revision in the bucket; None for a key found gone after a reconnect."""


@dataclass(frozen=True)
class ManifestChange:
    name: str
    version: str
    data: dict[str, Any] | None
    """The stored manifest; None: deleted (or unreadable)."""
    revision: int | None = None


@dataclass(frozen=True)
class OwnerChange:
    kind: Literal["link", "config", "state"]
    key: Any
    """A `LinkIdentity`, a config name, or (app, provider id) for a state pin."""
    app: str | None
    data: dict[str, Any] | None = None
    """The whole record (state pins carry where the data lives)."""


@dataclass(frozen=True)
class StoreSynced:
    what: Literal["apps", "owners"]


# --- JetStream that is briefly away ------------------------------------------------------

def store_transient(exc: BaseException) -> bool:
    """`transient`, also for `trellis.interfaces.store`'s errors, which report a 503 as NO_RESPONDERS: used
    once the controller has opened its own buckets, so JetStream is known to be there."""
    return transient(exc) or (isinstance(exc, StoreError) and exc.code in (ErrorCode.TIMEOUT, ErrorCode.NO_RESPONDERS))


async def retry_transient(what: str, attempt: Callable[[], Awaitable[T]], retry_s: float, *,
                          first_delay_s: float = 0.1, max_delay_s: float = 2.0,
                          retryable: Callable[[BaseException], bool] = transient) -> T:
    """``attempt()``, tried again with backoff (``first_delay_s`` doubling up to ``max_delay_s``)
    while it fails with a transient JetStream error, for up to ``retry_s`` seconds; then the
    last error is raised. ``retry_s`` 0: one attempt."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    delay = first_delay_s
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except Exception as exc:
            if not retryable(exc) or loop.time() + delay > deadline:
                raise
            log.warning("%s: JetStream unavailable (%s, attempt %d); retrying in %.1fs", what, describe(exc),
                        tries, delay)
        await asyncio.sleep(delay)  # backoff, not synchronisation: JetStream says nothing when it is back
        delay = min(delay * 2, max_delay_s)


async def open_bucket(nc: Client, name: str, description: str, settings: StoreSettings,
                      ttl_s: float | None = None, *, retry_s: float = 0.0) -> KeyValue:
    """Bind to a KV bucket, creating it (with these settings) when it does not exist.

    While JetStream is briefly unavailable (a cluster electing a leader: 503, or no answer)
    the attempt is repeated with backoff for up to ``retry_s`` seconds; two processes racing
    to create the bucket both end up bound to it.
    """
    js = nc.jetstream(timeout=settings.timeout_s)

    async def attempt() -> KeyValue:
        try:
            return await js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            pass
        try:
            return await js.create_key_value(KeyValueConfig(
                bucket=name, history=1, replicas=settings.replicas, ttl=ttl_s, description=description))
        except nats.js.errors.BadRequestError:
            return await js.key_value(name)  # created by someone else meanwhile: use theirs

    try:
        return await retry_transient(f"opening bucket {name}", attempt, retry_s)
    except nats.errors.NoRespondersError:
        raise AppStoreError(f"JetStream is not available on the NATS server (needed for {name}): "
                            "start nats-server with -js", ErrorCode.NO_RESPONDERS) from None
    except nats.js.errors.ServiceUnavailableError as exc:
        if exc.err_code == JS_NOT_ENABLED_FOR_ACCOUNT:
            raise AppStoreError(f"JetStream is not enabled for this NATS account (needed for {name})",
                                ErrorCode.NO_RESPONDERS) from None
        raise AppStoreError(f"JetStream stayed unavailable ({describe(exc)}) for {retry_s:.0f}s opening bucket "
                            f"{name}: is the NATS cluster missing a majority of its nodes?",
                            ErrorCode.NO_RESPONDERS) from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise AppStoreError(f"JetStream did not answer within {settings.timeout_s}s opening bucket {name}"
                            + (f" (tried for {retry_s:.0f}s): is the NATS cluster missing a majority of its nodes?"
                               if retry_s else ""), ErrorCode.TIMEOUT) from None


class AppStore:
    """The apps bucket of one lattice."""

    def __init__(self, nc: Client, lattice: str, settings: StoreSettings | None = None, *,
                 retry_s: float = 0.0) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.settings = settings or StoreSettings.from_env()
        self.retry_s = retry_s
        """How long opening the bucket and starting a watch are retried while JetStream is unavailable."""
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def kv(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                self._kv = await open_bucket(self.nc, subjects.bucket(self.lattice, APPS),
                                             f"Trellis wadm applications of lattice {self.lattice}", self.settings,
                                             retry_s=self.retry_s)
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

    async def change(self, name: str, fn: Callable[[AppRecord | None], AppRecord | None]
                     ) -> tuple[AppRecord | None, AppRecord | None, int]:
        """Apply `fn` to the record with compare-and-set; returns (before, after, revision). `fn` may raise.

        The revision is the one written (for a deletion, or no change, the one read)."""
        kv = await self.kv()
        for _ in range(_CAS_ATTEMPTS):
            before, revision = await self.get(name)
            after = fn(before)
            if after == before:
                return before, after, revision
            try:
                if after is None:
                    await kv.delete(app_key(name), last=revision or None)
                elif before is None:
                    revision = await kv.create(app_key(name), after.model_dump_json().encode())
                else:
                    revision = await kv.update(app_key(name), after.model_dump_json().encode(), last=revision)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code in (10071, 10164):  # wrong last sequence / key exists
                    continue
                raise
            return before, after, revision
        raise AppStoreError(f"application {name!r} kept changing; try again", ErrorCode.CONFLICT)

    # --- manifests ---------------------------------------------------------------------

    async def put_manifest(self, name: str, version: str, data: dict[str, Any]) -> int:
        """Store a manifest; returns its revision."""
        kv = await self.kv()
        return await kv.put(manifest_key(name, version), json.dumps(data, sort_keys=True).encode())

    async def get_manifest(self, name: str, version: str) -> dict[str, Any] | None:
        kv = await self.kv()
        try:
            entry = await kv.get(manifest_key(name, version))
        except nats.js.errors.KeyNotFoundError:
            return None
        return _decode_manifest(entry.key, entry.value or b"")

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

    async def set_state_pin(self, app: str, provider_id: str, pin: dict[str, Any]) -> None:
        kv = await self.kv()
        await kv.put(state_pin_key(app, provider_id), json.dumps({"app": app, **pin}, sort_keys=True).encode())

    async def clear_state_pin(self, app: str, provider_id: str) -> None:
        await self._clear(state_pin_key(app, provider_id))

    async def _clear(self, key: str) -> None:
        kv = await self.kv()
        try:
            await kv.purge(key)
        except nats.js.errors.KeyNotFoundError:
            pass

    # --- watching ----------------------------------------------------------------------

    async def watch_apps(self) -> AsyncIterator[RecordChange | ManifestChange | StoreSynced]:
        """Every record and manifest, `StoreSynced("apps")`, then changes (re-read after a reconnect).

        One watch of the whole bucket (ownership records skipped), so changes come in the
        order they were written: a version's manifest always before the record naming it.
        """
        async for key, value, revision in self._watch_keys(">", "apps"):
            if isinstance(value, StoreSynced):
                yield value
            elif key.startswith("app."):
                name = key.split(".", 1)[1]
                yield RecordChange(name, None if value is None else _decode_record(key, value), revision)
            elif key.startswith("manifest."):
                parsed = parse_manifest_key(key)
                if parsed is not None:
                    yield ManifestChange(*parsed, None if value is None else _decode_manifest(key, value), revision)

    async def watch_owners(self) -> AsyncIterator[OwnerChange | StoreSynced]:
        """Every ownership record, `StoreSynced("owners")`, then changes (re-read after a reconnect)."""
        async for key, value, _ in self._watch_keys("owner.>", "owners"):
            if isinstance(value, StoreSynced):
                yield value
                continue
            parsed = parse_owner_key(key)
            if parsed is None:
                continue
            app: str | None = None
            data: dict[str, Any] | None = None
            if value is not None:
                try:
                    data = json.loads(value)
                    app = str(data["app"])
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring unreadable owner record %s", key)
                    continue
            yield OwnerChange(parsed[0], parsed[1], app, data)

    async def _watch_keys(self, pattern: str, what: Literal["apps", "owners"]
                          ) -> AsyncIterator[tuple[str, bytes | StoreSynced | None, int | None]]:
        """(key, value, revision) for every key matching `pattern`, then (``""``, StoreSynced, None),
        then changes; value None is a deletion. After a reconnect the keys are read again and keys
        that went away meanwhile come out as deletions (revision None), so the caller never keeps
        a stale entry."""
        await self.kv()
        known: set[str] = set()
        fresh: set[str] | None = None
        synced = False
        async for entry in self._bucket_watch(pattern):
            if entry is RESUBSCRIBED:
                fresh = set()
                continue
            if entry is None:
                if fresh is not None:
                    for key in sorted(known - fresh):
                        known.discard(key)
                        yield key, None, None
                    fresh = None
                if not synced:
                    synced = True
                    yield "", StoreSynced(what), None
                continue
            assert isinstance(entry, BucketEntry)
            if fresh is not None:
                fresh.add(entry.key)
            if entry.deleted:
                known.discard(entry.key)
                yield entry.key, None, entry.revision
            else:
                known.add(entry.key)
                yield entry.key, entry.value, entry.revision

    async def _bucket_watch(self, pattern: str) -> AsyncIterator[Any]:
        """`trellis.interfaces.kv_watch.watch_bucket`, whose first subscription is retried with backoff for
        up to ``retry_s`` while JetStream is unavailable (once subscribed, it resubscribes by itself)."""
        name = subjects.bucket(self.lattice, APPS)
        watch: Any = None

        async def subscribed() -> Any:
            nonlocal watch
            watch = bucket_watch(self.nc, name, pattern)
            try:
                return await watch.__anext__()  # the subscription is made before anything is yielded
            except BaseException:
                await watch.aclose()
                raise

        first = await retry_transient(f"watching {name} {pattern}", subscribed, self.retry_s)
        try:
            yield first
            async for entry in watch:
                yield entry
        finally:
            await watch.aclose()


def parse_manifest_key(key: str) -> tuple[str, str] | None:
    """(name, version) of a ``manifest.<name>.<version>`` key."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "manifest":
        return None
    try:
        return parts[1], decode_token(parts[2])
    except (ValueError, UnicodeDecodeError):
        return None


def _decode_manifest(key: str, data: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(data)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        log.warning("ignoring unreadable manifest %s", key)
        return None
    return found


def _decode_record(key: str, data: bytes) -> AppRecord | None:
    try:
        return AppRecord.model_validate_json(data)
    except ValidationError as exc:
        log.warning("ignoring unreadable application record %s: %s", key, exc)
        return None
