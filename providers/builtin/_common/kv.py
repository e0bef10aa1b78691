"""``wasi:keyvalue`` (store, atomics, batch) on any backend: the part both KV providers share.

:class:`KeyValueFront` holds the exported handlers. Each call finds the link's
:class:`KvBackend` (per link, see :mod:`.links`), maps the bucket handle to a
backend bucket with the link's :class:`BucketMap`, runs the backend operation
before the caller's deadline, and turns failures into the WIT ``error``:

* no link from the caller → ``access-denied``;
* an identifier the backend cannot name, a value that is not a number for
  ``increment``, a backend that is down or slow → ``other(message)``;
* a bucket that does not exist and may not be created → ``no-such-store``.

The bucket handle (the token the host keeps for the component) is the
identifier the component opened, not the backend name: every call maps it
again with the link's current config, so tokens mean the same to every
instance of the provider and a component can never reach a bucket its link
does not map to.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from trellis.providers.sdk import Context, export

from .calls import before_deadline
from .config import ConfigError
from .links import LinkTable, LinkUnusable, NotLinked

log = logging.getLogger("trellis.providers.builtin")

#: bucket identifiers (and prefixes + identifiers): what every backend can name
IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_U64 = 2**64 - 1

STORE = "wasi:keyvalue/store"
ATOMICS = "wasi:keyvalue/atomics"
BATCH = "wasi:keyvalue/batch"


class KvError(Exception):
    """``error::other``: the message says what went wrong."""


class NoSuchStore(Exception):
    """``error::no-such-store``."""


class AccessDenied(Exception):
    """``error::access-denied``."""


def wasmcloud_spelling(cfg: Mapping[str, str], known: Iterable[str]) -> dict[str, str]:
    """``cfg`` with wasmCloud's upper-case keys (``BUCKET``, ``URL``, ``JS_DOMAIN``) read as
    Trellis's lower-case ones, so a wasmCloud link config works as it is; a key spelt in
    lower case wins."""
    names = set(known)
    out = dict(cfg)
    for key, value in cfg.items():
        low = key.lower()
        if key != low and low in names and low not in cfg:
            out[low] = value
            del out[key]
    return out


@dataclass(frozen=True)
class BucketMap:
    """Which backend bucket a component's ``open(identifier)`` means (pure).

    ``bucket`` pins the link to one backend bucket whatever the identifier;
    otherwise the backend bucket is ``prefix + identifier``. A wasmCloud component
    opens its bucket by *link name* (``open("default")``) and gets the bucket its
    link's config names: with ``bucket`` set that is what happens, and an identifier
    that names another link of the same component to this provider uses that link's
    config (:meth:`KeyValueFront._backend`).
    """

    bucket: str | None = None
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.bucket is not None and not IDENTIFIER.match(self.bucket):
            raise ConfigError(f"bucket must be 1-64 letters, digits, '-' and '_'; got {self.bucket!r}")
        if self.prefix and not IDENTIFIER.match(self.prefix):
            raise ConfigError(f"bucket_prefix must be letters, digits, '-' and '_'; got {self.prefix!r}")

    def resolve(self, identifier: str) -> str:
        if self.bucket is not None:
            return self.bucket
        name = self.prefix + identifier
        if not IDENTIFIER.match(identifier) or not IDENTIFIER.match(name):
            raise KvError(f"invalid bucket identifier {identifier!r}: use 1-64 letters, digits, '-' and '_'"
                          + (f" (after the prefix {self.prefix!r})" if self.prefix else ""))
        return name


def parse_counter(key: str, raw: bytes | None) -> int:
    """The number a counter key holds (missing: 0); its value is decimal text."""
    if raw is None:
        return 0
    try:
        text = bytes(raw).decode("ascii")
        if not text.isdigit():
            raise ValueError(text)
        value = int(text)
    except (UnicodeDecodeError, ValueError):
        shown = bytes(raw[:32])
        raise KvError(f"cannot increment {key!r}: its value {shown!r} is not a non-negative "
                      "decimal number") from None
    if value > MAX_U64:
        raise KvError(f"cannot increment {key!r}: its value does not fit in a u64")
    return value


def add_u64(key: str, current: int, delta: int) -> int:
    total = current + delta
    if total > MAX_U64:
        raise KvError(f"incrementing {key!r} by {delta} would overflow a u64 (it holds {current})")
    return total


class KvBackend(Protocol):
    """One link's view of a backend. ``name`` is the backend bucket (already mapped)."""

    buckets: BucketMap

    async def open(self, name: str) -> None: ...  # raises NoSuchStore when it may not be created
    async def get(self, name: str, key: str) -> bytes | None: ...
    async def set(self, name: str, key: str, value: bytes) -> None: ...
    async def delete(self, name: str, key: str) -> None: ...
    async def exists(self, name: str, key: str) -> bool: ...
    async def list_keys(self, name: str, cursor: int | None) -> tuple[list[str], int | None]: ...
    async def increment(self, name: str, key: str, delta: int) -> int: ...
    async def get_many(self, name: str, keys: list[str]) -> list[bytes | None]: ...
    async def set_many(self, name: str, pairs: list[tuple[str, bytes]]) -> None: ...
    async def delete_many(self, name: str, keys: list[str]) -> None: ...


def other(message: str) -> dict[str, Any]:
    return {"err": {"other": message}}


class KeyValueFront:
    """The exported ``wasi:keyvalue`` functions; pass an instance to ``Provider(exports=[...])``."""

    def __init__(self, name: str, links: LinkTable[Any]) -> None:
        self.name = name
        self.links = links

    async def _backend(self, ctx: Context, token: str) -> KvBackend:
        """The link the call came over, or, when the bucket identifier is the name of another
        link of the caller to this provider, that link (wasmCloud: a bucket is opened by link name)."""
        if token != ctx.link_name:
            named: KvBackend | None = self.links.named(ctx.source, token)
            if named is not None:
                return named
        return await self.links.for_call(ctx)

    async def _run(self, ctx: Context, token: str, op: Callable[[KvBackend, str], Awaitable[Any]]) -> dict[str, Any]:
        try:
            backend = await self._backend(ctx, token)
            bucket = backend.buckets.resolve(token)
            async with before_deadline(ctx):
                return {"ok": await op(backend, bucket)}
        except (NotLinked, AccessDenied):
            return {"err": {"access-denied": None}}
        except NoSuchStore:
            return {"err": {"no-such-store": None}}
        except (KvError, LinkUnusable) as exc:
            return other(str(exc))
        except TimeoutError:
            return other(f"{self.name}: {ctx.function} on bucket {token!r} did not finish before the "
                         "caller's deadline")
        except Exception as exc:  # the backend failed: the component gets the message, the log the details
            log.warning("%s: %s from %s failed: %r", self.name, ctx.function, ctx.source, exc)
            return other(f"{self.name}: {exc.__class__.__name__}: {exc}")

    # --- wasi:keyvalue/store -----------------------------------------------------------

    @export(STORE, "open")
    async def open(self, identifier: str, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        async def op(b: KvBackend, bucket: str) -> str:
            await b.open(bucket)
            return identifier  # the handle: mapped again on every call

        return await self._run(ctx, identifier, op)

    @export(STORE, "bucket.get")
    async def get(self, bucket: str, key: str, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.get(name, key))

    @export(STORE, "bucket.set")
    async def set(self, bucket: str, key: str, value: bytes, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.set(name, key, bytes(value)))

    @export(STORE, "bucket.delete")
    async def delete(self, bucket: str, key: str, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.delete(name, key))

    @export(STORE, "bucket.exists")
    async def exists(self, bucket: str, key: str, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.exists(name, key))

    @export(STORE, "bucket.list-keys")
    async def list_keys(self, bucket: str, cursor: int | None, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        async def op(b: KvBackend, name: str) -> dict[str, Any]:
            keys, next_cursor = await b.list_keys(name, cursor)
            return {"keys": keys, "cursor": next_cursor}

        return await self._run(ctx, bucket, op)

    # --- wasi:keyvalue/atomics ---------------------------------------------------------

    @export(ATOMICS, "increment")
    async def increment(self, bucket: str, key: str, delta: int, *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.increment(name, key, int(delta)))

    # --- wasi:keyvalue/batch -----------------------------------------------------------

    @export(BATCH, "get-many")
    async def get_many(self, bucket: str, keys: list[str], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        async def op(b: KvBackend, name: str) -> list[Any]:
            values = await b.get_many(name, list(keys))
            return [None if v is None else [k, v] for k, v in zip(keys, values, strict=True)]

        return await self._run(ctx, bucket, op)

    @export(BATCH, "set-many")
    async def set_many(self, bucket: str, key_values: list[Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        pairs = [(str(k), bytes(v)) for k, v in key_values]
        return await self._run(ctx, bucket, lambda b, name: b.set_many(name, pairs))

    @export(BATCH, "delete-many")
    async def delete_many(self, bucket: str, keys: list[str], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, bucket, lambda b, name: b.delete_many(name, list(keys)))
