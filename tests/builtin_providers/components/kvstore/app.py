"""Python side of the `kvstore` test component: wasi:keyvalue/store through a bucket handle."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import store

_CASES = {store.Error_NoSuchStore: "no-such-store", store.Error_AccessDenied: "access-denied"}


def _describe(error: store.Error) -> str:
    if isinstance(error, store.Error_Other):
        return f"other: {error.value}"
    return _CASES.get(type(error), repr(error))


def _kv(fn):
    """Run `fn(bucket, ...)` on an opened bucket (dropped after); WIT errors become strings."""

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
    def put(self, bucket, key: str, value: bytes) -> None:
        bucket.set(key, value)

    @_kv
    def fetch(self, bucket, key: str) -> bytes:
        value = bucket.get(key)
        if value is None:
            raise Err("missing")
        return value

    @_kv
    def copy(self, bucket, source: str, target: str) -> None:
        value = bucket.get(source)
        if value is None:
            raise Err("missing")
        bucket.set(target, value)

    @_kv
    def erase(self, bucket, key: str) -> None:
        bucket.delete(key)

    @_kv
    def keys(self, bucket) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = bucket.list_keys(cursor)
            found.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return sorted(set(found))
