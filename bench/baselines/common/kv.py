"""NATS JetStream key-value as Trellis's ``builtin:keyvalue-nats`` uses it, straight from nats-py."""

from __future__ import annotations

from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue


async def open_bucket(nc: Any, name: str) -> KeyValue:
    """The bucket ``name``, created as the Trellis provider creates it (history 1, file storage) if missing."""
    js = nc.jetstream()
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE))


async def list_keys(nc: Any, bucket: str) -> list[str]:
    """Every key of ``bucket`` that has a message, sorted (one request: the stream's subjects).

    Not ``KeyValue.keys()``: under load nats-py can call its watcher's snapshot complete
    before it has processed what the server sent, and list nothing. Deleted keys keep a
    marker message, so they are listed too: a reader skips keys whose ``get`` finds none.
    """
    prefix = f"$KV.{bucket}."
    info = await nc.jetstream().stream_info(f"KV_{bucket}", subjects_filter=prefix + ">")
    return sorted(subject[len(prefix):] for subject in (info.state.subjects or {}))
