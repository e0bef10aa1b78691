"""Python side of the `kvclient` test component."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import store


def _describe(error: store.Error) -> str:
    if isinstance(error, store.Error_Other):
        return f"other: {error.value}"
    return type(error).__name__.removeprefix("Error_")


class WitWorld(wit_world.WitWorld):
    def lookup(self, bucket_name: str, key: str) -> str | None:
        try:
            # `with` drops the handle on exit: the host sees a resource-drop.
            with store.open(bucket_name) as bucket:
                return bucket.get(key)
        except Err as e:
            raise Err(_describe(e.value)) from e

    def copy(self, bucket_name: str, source: str, target: str) -> str:
        try:
            with store.open(bucket_name) as bucket:
                value = bucket.get(source)
                if value is None:
                    raise Err(f"no key {source!r}")
                bucket.set(target, value)
                return value
        except Err as e:
            if isinstance(e.value, str):
                raise
            raise Err(_describe(e.value)) from e
