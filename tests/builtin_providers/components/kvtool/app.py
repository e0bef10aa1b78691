"""Python side of the `kvtool` test component: wasi:keyvalue, one function each."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import atomics, batch, store

_CASES = {store.Error_NoSuchStore: "no-such-store", store.Error_AccessDenied: "access-denied"}


def _describe(error: store.Error) -> str:
    if isinstance(error, store.Error_Other):
        return f"other: {error.value}"
    return _CASES.get(type(error), repr(error))


def _kv(fn):
    """Run `fn(bucket)` on an opened bucket; WIT errors become strings."""

    def wrapper(self, bucket_name, *args):
        try:
            with store.open(bucket_name) as bucket:
                return fn(self, bucket, *args)
        except Err as e:
            if isinstance(e.value, str):
                raise
            raise Err(_describe(e.value)) from e

    return wrapper


class WitWorld(wit_world.WitWorld):
    @_kv
    def bump(self, bucket, key: str, delta: int) -> int:
        return atomics.increment(bucket, key, delta)

    @_kv
    def count(self, bucket, key: str) -> int | None:
        value = bucket.get(key)
        return None if value is None else int(value.decode())

    @_kv
    def put(self, bucket, key: str, value: bytes) -> None:
        bucket.set(key, value)

    @_kv
    def fetch(self, bucket, key: str) -> bytes | None:
        return bucket.get(key)

    @_kv
    def erase(self, bucket, key: str) -> None:
        bucket.delete(key)

    @_kv
    def has(self, bucket, key: str) -> bool:
        return bucket.exists(key)

    @_kv
    def keys(self, bucket) -> tuple[list[str], int]:
        found: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = bucket.list_keys(cursor)
            pages += 1
            found.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return sorted(set(found)), pages

    @_kv
    def put_many(self, bucket, pairs: list[tuple[str, bytes]]) -> None:
        batch.set_many(bucket, pairs)

    @_kv
    def fetch_many(self, bucket, keys: list[str]) -> list[bytes | None]:
        return [None if kv is None else kv[1] for kv in batch.get_many(bucket, keys)]

    @_kv
    def erase_many(self, bucket, keys: list[str]) -> None:
        batch.delete_many(bucket, keys)
