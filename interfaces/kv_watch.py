"""Watching a JetStream KV bucket: the latest entry of each key, then every change.

Shared by the lattice store (links, config) and the wadm controller (apps).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from .cancel import stop_if_cancelled

__all__ = ["BucketEntry", "RESUBSCRIBED", "RECHECK_S", "watch_bucket"]


class _Marker:
    pass


#: yielded by watch_bucket before it reads the bucket again after a reconnect
RESUBSCRIBED = _Marker()
#: how long the server keeps a watch's consumer after its process is gone (seconds): short, so
#: processes that die or restart do not pile up consumers (the ordered consumer heartbeats while alive)
INACTIVE_S = 30
#: how often a quiet watch checks whether the connection reconnected (seconds)
RECHECK_S = 1.0


@dataclass(frozen=True)
class BucketEntry:
    key: str
    value: bytes
    revision: int
    deleted: bool


async def watch_bucket(nc: Client, bucket: str, pattern: str, *, ignore_deletes: bool = False,
                 resubscribe: bool = True) -> AsyncGenerator[BucketEntry | _Marker | None, None]:
    """Entries of ``kv`` matching ``pattern``: the latest of each, ``None``, then updates.

    Our own ordered consumer rather than nats-py's ``KeyValue.watch``, for two reasons:

    * nats-py decides the snapshot is complete by comparing the server's pending
      count with the messages *it has processed*; messages already delivered but
      not yet processed make it report an empty snapshot. Here the end of the
      snapshot is the entry the server sent with nothing pending after it (or,
      when the server has delivered nothing and nothing is pending, at once).
    * its watcher notices a server restart only after missed heartbeats, tens of
      seconds later; here the watch is replaced after every reconnect of ``nc``
      (``RESUBSCRIBED``, then a fresh snapshot and ``None``).
    """
    js = nc.jetstream()
    pre, stream = f"$KV.{bucket}.", f"KV_{bucket}"
    first = True
    backoff = 0.1
    while True:
        reconnects = nc.stats["reconnects"]
        queue: asyncio.Queue[tuple[BucketEntry, int]] = asyncio.Queue()

        async def on_msg(msg: Msg, queue: asyncio.Queue[tuple[BucketEntry, int]] = queue) -> None:
            meta = msg.metadata  # (queue bound now: a late message of this subscription goes to its own)
            headers = msg.headers or {}
            deleted = headers.get(KV_OP) in (KV_DEL, KV_PURGE) or headers.get(KV_MARKER_REASON) in (
                "MaxAge", "Purge", "Remove")
            queue.put_nowait((BucketEntry(msg.subject[len(pre):], msg.data, meta.sequence.stream, deleted),
                              meta.num_pending))

        sub = None
        try:
            sub = await js.subscribe(pre + pattern, stream=stream, cb=on_msg, ordered_consumer=True,
                                     deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                                     inactive_threshold=INACTIVE_S)
            info = await sub.consumer_info()
        except Exception:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if first:
                raise
            await asyncio.sleep(backoff)  # JetStream may need a moment after a restart
            backoff = min(backoff * 2, 2.0)
            continue
        if not first:
            yield RESUBSCRIBED
        first, backoff = False, 0.1
        snapshot_done = info.num_pending == 0 and (info.delivered is None or info.delivered.consumer_seq == 0)
        try:
            if snapshot_done:
                yield None
            while True:
                stop_if_cancelled()  # wait_for below may have swallowed a cancel (Python 3.11)
                try:
                    entry, pending = await asyncio.wait_for(queue.get(), RECHECK_S)
                except TimeoutError:
                    if resubscribe and nc.stats["reconnects"] != reconnects:
                        break
                    continue
                if not (ignore_deletes and entry.deleted):
                    yield entry
                if not snapshot_done and pending == 0:
                    snapshot_done = True
                    yield None
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()
