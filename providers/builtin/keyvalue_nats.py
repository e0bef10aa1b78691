"""``builtin:keyvalue-nats``: ``wasi:keyvalue`` (store, atomics, batch) on NATS JetStream KV buckets.

A component's ``open(identifier)`` maps to a JetStream KV bucket through its
link's config (``bucket`` pins one, else ``bucket_prefix + identifier``); the
bucket is created on first open unless ``create=false``. Values are stored as
given; ``increment`` keeps decimal text and updates it by compare-and-set on the
key's revision, retrying on conflict, so concurrent increments from any number
of components and provider instances never lose a count.

By default the provider uses the lattice's NATS server and credentials; ``url``
(and friends, see :mod:`._common.nats`) select another. Run it with
``trellis start provider builtin:keyvalue-nats ID``; see docs/builtin-providers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from trellis.interfaces.kv_watch import BucketEntry, watch_bucket
from trellis.providers.builtin._common import config as cfgs
from trellis.providers.builtin._common.health import probe_each
from trellis.providers.builtin._common.kv import (
    AccessDenied,
    BucketMap,
    KeyValueFront,
    KvError,
    NoSuchStore,
    add_u64,
    parse_counter,
    wasmcloud_spelling,
)
from trellis.providers.builtin._common.lifecycle import LinkedBackend
from trellis.providers.builtin._common.nats import (
    NATS_KEYS,
    NatsTarget,
    close_nats,
    lattice_nats,
    nats_target,
    open_nats,
    reserved_bucket,
)
from trellis.providers.builtin._common.shared import Shared
from trellis.providers.sdk import Link, NatsBootstrap, Provider, run

log = logging.getLogger("trellis.providers.builtin.keyvalue_nats")

NAME = "keyvalue-nats"
KEYS = (*NATS_KEYS, "bucket", "bucket_prefix", "create", "history", "ttl_s", "max_bytes", "replicas", "storage",
        "js_domain", "list_page_size")
#: increments give up after this many conflicting writers in a row (the deadline usually comes first)
MAX_CAS_ATTEMPTS = 1000
#: batch operations keep at most this many requests in flight
BATCH_PARALLEL = 32


@dataclass(frozen=True)
class BucketSettings:
    """How a bucket this provider creates is made (an existing bucket is used as it is)."""

    history: int = 1
    ttl_s: float | None = None
    max_bytes: int | None = None
    replicas: int = 1
    storage: str = "file"

    def kv_config(self, name: str) -> KeyValueConfig:
        return KeyValueConfig(bucket=name, history=self.history, ttl=self.ttl_s, max_bytes=self.max_bytes,
                              replicas=self.replicas,
                              storage=StorageType.MEMORY if self.storage == "memory" else StorageType.FILE)


@dataclass(frozen=True)
class NatsKvSettings:
    target: NatsTarget
    buckets: BucketMap
    create: bool
    new_buckets: BucketSettings
    js_domain: str | None
    page_size: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, str], lattice: NatsBootstrap | None) -> NatsKvSettings:
        cfg = wasmcloud_spelling(cfg, KEYS)
        cfgs.unknown_keys(cfg, KEYS, NAME)
        ttl = cfgs.number(cfg, "ttl_s", 0.0)
        max_bytes = cfgs.integer(cfg, "max_bytes", 0, minimum=0)
        return cls(
            target=nats_target(cfg, lattice),
            buckets=BucketMap(cfgs.text(cfg, "bucket"), cfgs.text(cfg, "bucket_prefix", "") or ""),
            create=cfgs.boolean(cfg, "create", True),
            new_buckets=BucketSettings(
                history=cfgs.integer(cfg, "history", 1, minimum=1, maximum=64),
                ttl_s=ttl or None, max_bytes=max_bytes or None,
                replicas=cfgs.integer(cfg, "replicas", 1, minimum=1, maximum=5),
                storage=cfgs.choice(cfg, "storage", "file", ("file", "memory")),
            ),
            js_domain=cfgs.text(cfg, "js_domain"),
            page_size=cfgs.integer(cfg, "list_page_size", 1000, minimum=1),
        )


def _bad_key(key: str) -> KvError:
    return KvError(f"invalid key {key!r} for NATS KV: use letters, digits and '-', '_', '=', '/', '.' "
                   "(not starting or ending with '.')")


async def _current_keys(nc: Client, bucket: str) -> list[str]:
    keys: list[str] = []
    async with contextlib.aclosing(watch_bucket(nc, bucket, ">", ignore_deletes=True, resubscribe=False)) as it:
        async for entry in it:
            if entry is None:  # the end of the snapshot
                break
            if isinstance(entry, BucketEntry):
                keys.append(entry.key)
    return keys


class NatsKvLink:
    """One link's buckets on one NATS server."""

    def __init__(self, settings: NatsKvSettings, connections: Shared[NatsTarget, Client]) -> None:
        self.settings = settings
        self.buckets = settings.buckets
        self._connections = connections
        self._opened: dict[str, KeyValue] = {}

    async def _js(self) -> JetStreamContext:
        nc = await self._connections.get(self.settings.target)
        return nc.jetstream(domain=self.settings.js_domain)

    async def _kv(self, name: str) -> KeyValue:
        kv = self._opened.get(name)
        if kv is not None:
            return kv
        if self.settings.target.is_lattice and reserved_bucket(name):
            raise AccessDenied()
        js = await self._js()
        try:
            kv = await js.key_value(name)
        except BucketNotFoundError:
            if not self.settings.create:
                raise NoSuchStore() from None
            kv = await js.create_key_value(self.settings.new_buckets.kv_config(name))
            log.info("created JetStream KV bucket %s on %s", name, self.settings.target.describe())
        self._opened[name] = kv
        return kv

    async def open(self, name: str) -> None:
        await self._kv(name)

    async def get(self, name: str, key: str) -> bytes | None:
        kv = await self._kv(name)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        except InvalidKeyError:
            raise _bad_key(key) from None
        return entry.value or b""

    async def set(self, name: str, key: str, value: bytes) -> None:
        kv = await self._kv(name)
        try:
            await kv.put(key, value)
        except InvalidKeyError:
            raise _bad_key(key) from None

    async def delete(self, name: str, key: str) -> None:
        kv = await self._kv(name)
        try:
            await kv.delete(key)
        except InvalidKeyError:
            raise _bad_key(key) from None

    async def exists(self, name: str, key: str) -> bool:
        return await self.get(name, key) is not None

    async def list_keys(self, name: str, cursor: int | None) -> tuple[list[str], int | None]:
        """JetStream lists every key at once: pages are slices of the sorted keys; the cursor is an offset."""
        kv = await self._kv(name)
        if self.settings.js_domain:
            try:
                keys = sorted(await kv.keys())
            except NoKeysError:
                keys = []
        else:
            # not kv.keys(): under load nats-py can call its snapshot complete before it has
            # processed what the server delivered, and list nothing (interfaces/kv_watch.py)
            nc = await self._connections.get(self.settings.target)
            keys = sorted(await _current_keys(nc, name))
        start = cursor or 0
        end = start + self.settings.page_size
        return keys[start:end], (end if end < len(keys) else None)

    async def increment(self, name: str, key: str, delta: int) -> int:
        """Compare-and-set on the key's revision; a conflicting writer means read again and retry."""
        kv = await self._kv(name)
        for attempt in range(MAX_CAS_ATTEMPTS):
            try:
                entry = await kv.get(key)
                current, revision = parse_counter(key, entry.value), entry.revision
            except KeyNotFoundError:
                current, revision = 0, None
            except InvalidKeyError:
                raise _bad_key(key) from None
            new = add_u64(key, current, delta)
            try:
                if revision is None:
                    await kv.create(key, str(new).encode())
                else:
                    await kv.update(key, str(new).encode(), last=revision)
                return new
            except KeyWrongLastSequenceError:
                # someone else wrote first; back off a little (jittered) so writers spread out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))
        raise KvError(f"increment of {key!r} gave up after {MAX_CAS_ATTEMPTS} conflicting writes")

    async def _each(self, items: list[Any], fn: Any) -> list[Any]:
        gate = asyncio.Semaphore(BATCH_PARALLEL)

        async def one(item: Any) -> Any:
            async with gate:
                return await fn(item)

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def get_many(self, name: str, keys: list[str]) -> list[bytes | None]:
        return await self._each(keys, lambda k: self.get(name, k))

    async def set_many(self, name: str, pairs: list[tuple[str, bytes]]) -> None:
        await self._each(pairs, lambda kv: self.set(name, kv[0], kv[1]))

    async def delete_many(self, name: str, keys: list[str]) -> None:
        await self._each(keys, lambda k: self.delete(name, k))


class KeyValueNats(LinkedBackend[NatsKvLink]):
    """The provider's state: connections shared by links with the same server, one NatsKvLink per link."""

    name = NAME

    def __init__(self) -> None:
        self.connections: Shared[NatsTarget, Client] = Shared(
            f"{NAME} connection", lambda t: open_nats(t, f"trellis-{NAME}"), close_nats)
        self.lattice: NatsBootstrap | None = None
        super().__init__()

    async def started(self, info: Any) -> None:
        self.lattice = lattice_nats(info)

    async def build_link(self, link: Link, config: dict[str, str]) -> NatsKvLink:
        settings = NatsKvSettings.from_config(config, self.lattice)
        self.connections.attach(settings.target)
        return NatsKvLink(settings, self.connections)

    async def teardown_link(self, state: NatsKvLink) -> None:
        await self.connections.detach(state.settings.target)

    async def probe(self) -> tuple[bool, str]:
        targets = self.connections.keys()

        async def reach(t: NatsTarget) -> None:
            nc = await self.connections.get(t)
            await nc.flush(timeout=1)

        down = await probe_each([(t.describe(), partial(reach, t)) for t in targets])
        summary = f"{len(self.links)} link(s), {len(targets)} NATS server(s)"
        return not down, "; ".join([summary, *down, *self.link_problems()])

    async def close_backends(self) -> None:
        await self.connections.close_all()


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    impl = KeyValueNats()
    return impl.provider([KeyValueFront(NAME, impl.links)], "wasi:keyvalue on NATS JetStream KV buckets")


provider = build()

if __name__ == "__main__":
    run(provider)
