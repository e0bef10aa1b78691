"""``builtin:keyvalue-redis``: ``wasi:keyvalue`` (store, atomics, batch) on a Redis server.

A bucket is a key namespace: key ``K`` of backend bucket ``B`` is the Redis key
``{key_prefix}B:K`` (bucket names hold no ``:``, so namespaces never overlap).
``open`` always succeeds: a namespace needs no creating. ``increment`` is Redis's
own atomic ``INCRBY``; ``list-keys`` is ``SCAN`` (its cursor is Redis's cursor);
the batch functions are ``MGET``, ``MSET`` (atomic) and ``DEL``.

Each distinct ``url`` gets one pooled client (``redis.asyncio``), shared by
every link that names it. See docs/builtin-providers.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from trellis.providers.builtin._common import config as cfgs
from trellis.providers.builtin._common.health import probe_each
from trellis.providers.builtin._common.kv import MAX_U64, BucketMap, KeyValueFront, KvError, wasmcloud_spelling
from trellis.providers.builtin._common.lifecycle import LinkedBackend
from trellis.providers.builtin._common.shared import Shared
from trellis.providers.sdk import Link, Provider, run

log = logging.getLogger("trellis.providers.builtin.keyvalue_redis")

NAME = "keyvalue-redis"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
KEYS = ("url", "bucket", "bucket_prefix", "key_prefix", "max_connections", "timeout_s", "list_page_size")
#: INCRBY takes a signed 64-bit delta
MAX_DELTA = 2**63 - 1
#: SCAN rounds one list-keys page may take while finding no keys before it answers an empty page
MAX_EMPTY_SCANS = 16
_GLOB = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class ClientSettings:
    """What makes a Redis client: links with equal settings share one pool."""

    url: str
    max_connections: int
    timeout_s: float

    def __repr__(self) -> str:  # never a password in logs
        return f"ClientSettings({self.describe()})"

    def describe(self) -> str:
        return re.sub(r"//[^@/]*@", "//***@", self.url)  # no password in logs or health


@dataclass(frozen=True)
class RedisKvSettings:
    client: ClientSettings
    buckets: BucketMap
    key_prefix: str
    page_size: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, str]) -> RedisKvSettings:
        cfg = wasmcloud_spelling(cfg, KEYS)
        cfgs.unknown_keys(cfg, KEYS, NAME)
        url = cfgs.text(cfg, "url", DEFAULT_URL) or DEFAULT_URL
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise cfgs.ConfigError(f"url must start with redis://, rediss:// or unix://; got {url!r}")
        return cls(
            client=ClientSettings(url, cfgs.integer(cfg, "max_connections", 50, minimum=1),
                                  cfgs.number(cfg, "timeout_s", 5.0, minimum=0.01)),
            buckets=BucketMap(cfgs.text(cfg, "bucket"), cfgs.text(cfg, "bucket_prefix", "") or ""),
            key_prefix=cfg.get("key_prefix", ""),
            page_size=cfgs.integer(cfg, "list_page_size", 1000, minimum=1),
        )


async def open_client(s: ClientSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(s.url, max_connections=s.max_connections, socket_timeout=s.timeout_s,
                                   socket_connect_timeout=s.timeout_s, health_check_interval=30)


async def close_client(client: aioredis.Redis) -> None:
    await client.aclose()


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class RedisKvLink:
    """One link's buckets on one Redis server."""

    def __init__(self, settings: RedisKvSettings, clients: Shared[ClientSettings, aioredis.Redis]) -> None:
        self.settings = settings
        self.buckets = settings.buckets
        self._clients = clients

    async def _redis(self) -> aioredis.Redis:
        return await self._clients.get(self.settings.client)

    def _ns(self, name: str) -> str:
        return f"{self.settings.key_prefix}{name}:"

    def _key(self, name: str, key: str) -> str:
        return self._ns(name) + key

    async def open(self, name: str) -> None:
        await self._redis()  # a namespace needs no creating; the client is made here, not on first use

    async def get(self, name: str, key: str) -> bytes | None:
        return _bytes(await (await self._redis()).get(self._key(name, key)))

    async def set(self, name: str, key: str, value: bytes) -> None:
        await (await self._redis()).set(self._key(name, key), value)

    async def delete(self, name: str, key: str) -> None:
        await (await self._redis()).delete(self._key(name, key))

    async def exists(self, name: str, key: str) -> bool:
        return bool(await (await self._redis()).exists(self._key(name, key)))

    async def list_keys(self, name: str, cursor: int | None) -> tuple[list[str], int | None]:
        """One ``SCAN`` page (a key changed during the scan may be missed or listed twice)."""
        r = await self._redis()
        ns = self._ns(name)
        pattern = _GLOB.sub(r"\\\1", ns) + "*"
        position = cursor or 0
        for _ in range(MAX_EMPTY_SCANS):
            position, found = await r.scan(position, match=pattern, count=self.settings.page_size)
            keys = [_text(k)[len(ns):] for k in found]
            if keys or position == 0:
                break
        return keys, (int(position) or None)

    async def increment(self, name: str, key: str, delta: int) -> int:
        if delta > MAX_DELTA:
            raise KvError(f"Redis increments by at most {MAX_DELTA}; got {delta}")
        try:
            value = int(await (await self._redis()).incrby(self._key(name, key), delta))
        except ResponseError as exc:
            raise KvError(f"cannot increment {key!r}: {exc}") from None
        if not 0 <= value <= MAX_U64:
            raise KvError(f"{key!r} now holds {value}, which is not a u64")
        return value

    async def get_many(self, name: str, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await (await self._redis()).mget([self._key(name, k) for k in keys])
        return [_bytes(v) for v in values]

    async def set_many(self, name: str, pairs: list[tuple[str, bytes]]) -> None:
        if pairs:
            await (await self._redis()).mset({self._key(name, k): v for k, v in pairs})

    async def delete_many(self, name: str, keys: list[str]) -> None:
        if keys:
            await (await self._redis()).delete(*(self._key(name, k) for k in keys))


class KeyValueRedis(LinkedBackend[RedisKvLink]):
    """The provider's state: one pooled client per Redis URL, one RedisKvLink per link."""

    name = NAME
    #: a manifest secret named `url` (redis://:PASSWORD@HOST:PORT/DB) sets it: no password in config
    secret_keys = ("url",)

    def __init__(self) -> None:
        self.clients: Shared[ClientSettings, aioredis.Redis] = Shared(f"{NAME} client", open_client, close_client)
        super().__init__()

    async def build_link(self, link: Link, config: dict[str, str]) -> RedisKvLink:
        settings = RedisKvSettings.from_config(config)
        self.clients.attach(settings.client)
        return RedisKvLink(settings, self.clients)

    async def teardown_link(self, state: RedisKvLink) -> None:
        await self.clients.detach(state.settings.client)

    async def probe(self) -> tuple[bool, str]:
        servers = self.clients.keys()

        async def ping(s: ClientSettings) -> None:
            await (await self.clients.get(s)).ping()

        down = await probe_each([(s.describe(), partial(ping, s)) for s in servers])
        summary = f"{len(self.links)} link(s), {len(servers)} Redis server(s)"
        return not down, "; ".join([summary, *down, *self.link_problems()])

    async def close_backends(self) -> None:
        await self.clients.close_all()


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    impl = KeyValueRedis()
    return impl.provider([KeyValueFront(NAME, impl.links)], "wasi:keyvalue on Redis")


provider = build()

if __name__ == "__main__":
    run(provider)
