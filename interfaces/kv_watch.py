"""Watching a JetStream KV bucket: the latest entry of each key, then every change.

Shared by the lattice store (links, config) and the wadm controller (apps).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from .cancel import stop_if_cancelled

__all__ = ["BucketEntry", "HEARTBEAT_S", "RESUBSCRIBED", "RECHECK_S", "watch_bucket"]


class _Marker:
    pass


#: yielded by watch_bucket before it reads the bucket again after a reconnect (or a lost consumer)
RESUBSCRIBED = _Marker()
#: how long the server keeps a watch's consumer after its process is gone (seconds): short, so
#: processes that die or restart do not pile up consumers
INACTIVE_S = 30
#: how often the server tells a quiet watch that its consumer is alive (seconds); a watch that hears
#: nothing for two of them (the consumer's server went away without our connection noticing, or a
#: message was lost) reads the bucket again
HEARTBEAT_S = 5.0
#: how often a quiet watch checks for a reconnect when it cannot be told (a client without the hook)
RECHECK_S = 1.0

_RECONNECTED = object()  # put in every watch's queue when its connection reconnects
_BEAT = object()  # an idle heartbeat that matched what we received
_LOST = object()  # a gap in the consumer's sequence: a message never reached us


@dataclass(frozen=True)
class BucketEntry:
    key: str
    value: bytes
    revision: int
    deleted: bool


class _Reconnects:
    """Tells the watches of one client that it reconnected, without any of them polling: nats-py
    calls one ``reconnected_cb`` per client, which this wraps once (the client's own still runs)."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Any]] = set()

    @classmethod
    def of(cls, nc: Client) -> _Reconnects | None:
        hub = getattr(nc, "_trellis_reconnects", None)
        if isinstance(hub, cls):
            return hub
        if not hasattr(nc, "_reconnected_cb"):  # a nats-py without the attribute: watches poll
            return None
        hub = cls()
        original = nc._reconnected_cb

        async def reconnected() -> None:
            for q in list(hub.queues):
                q.put_nowait((_RECONNECTED, 0))
            if original is not None:
                await original()

        nc._reconnected_cb = reconnected
        setattr(nc, "_trellis_reconnects", hub)  # noqa: B010  (an attribute nats-py does not declare)
        return hub


async def watch_bucket(nc: Client, bucket: str, pattern: str, *, ignore_deletes: bool = False,
                 resubscribe: bool = True) -> AsyncGenerator[BucketEntry | _Marker | None, None]:
    """Entries of ``kv`` matching ``pattern``: the latest of each, ``None``, then updates.

    Our own consumer rather than nats-py's ``KeyValue.watch`` (an ordered consumer), because:

    * nats-py decides the snapshot is complete by comparing the server's pending
      count with the messages *it has processed*; messages already delivered but
      not yet processed make it report an empty snapshot. Here the end of the
      snapshot is the entry the server sent with nothing pending after it (or,
      when the server has delivered nothing and nothing is pending, at once).
    * its watcher notices a server restart only after missed heartbeats, tens of
      seconds later; here the watch is replaced after every reconnect of ``nc``
      (``RESUBSCRIBED``, then a fresh snapshot and ``None``), told by the client's
      reconnect callback.
    * an ordered consumer polls its flow control four times a second, in every
      process, for every watch, forever: an idle lattice's processes woke ~50 times
      a second for that alone. This consumer has no flow control (a watch reads
      little; nats-py queues what arrives); it is woken only by entries and by the
      server's idle heartbeat every :data:`HEARTBEAT_S`, which also carries the last
      sequence sent: a gap (an entry lost) or silence for two heartbeats (the
      consumer's server is gone) reads the bucket again, as a reconnect does.
    """
    pre, stream = f"$KV.{bucket}.", f"KV_{bucket}"
    jsm = nc.jsm()
    hub = _Reconnects.of(nc) if resubscribe else None
    window = 2 * HEARTBEAT_S + 1.0 if hub is not None or not resubscribe else RECHECK_S
    loop = asyncio.get_running_loop()
    first = True
    backoff = 0.1
    while True:
        reconnects = nc.stats["reconnects"]
        queue: asyncio.Queue[tuple[Any, int]] = asyncio.Queue()
        seen = 0  # the consumer sequence of the last entry received

        async def on_msg(msg: Msg, queue: asyncio.Queue[tuple[Any, int]] = queue) -> None:
            nonlocal seen  # (queue bound now: a late message of this subscription goes to its own)
            headers = msg.headers or {}
            if headers.get("Status"):  # the idle heartbeat: says the last sequence the server sent
                last = headers.get("Nats-Last-Consumer")
                queue.put_nowait((_LOST if last is not None and int(last) != seen else _BEAT, 0))
                return
            try:
                meta = msg.metadata
            except Exception:  # not a consumer's delivery
                return
            if int(meta.sequence.consumer) != seen + 1:
                queue.put_nowait((_LOST, 0))
                return
            seen = int(meta.sequence.consumer)
            deleted = headers.get(KV_OP) in (KV_DEL, KV_PURGE) or headers.get(KV_MARKER_REASON) in (
                "MaxAge", "Purge", "Remove")
            queue.put_nowait((BucketEntry(msg.subject[len(pre):], msg.data, meta.sequence.stream, deleted),
                              meta.num_pending))

        sub = None
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=on_msg)
            info = await jsm.add_consumer(stream, config=ConsumerConfig(
                deliver_subject=inbox, filter_subject=pre + pattern, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=AckPolicy.NONE, max_deliver=1, idle_heartbeat=HEARTBEAT_S, mem_storage=True,
                num_replicas=1, inactive_threshold=INACTIVE_S))
        except Exception:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if first:
                raise
            await asyncio.sleep(backoff)  # JetStream may need a moment after a restart
            backoff = min(backoff * 2, 2.0)
            continue
        if hub is not None:
            hub.queues.add(queue)
        if not first:
            yield RESUBSCRIBED
        first, backoff = False, 0.1
        snapshot_done = info.num_pending == 0 and (info.delivered is None or info.delivered.consumer_seq == 0)
        try:
            if snapshot_done:
                yield None
            heard = loop.time()
            while True:
                stop_if_cancelled()  # wait_for below may have swallowed a cancel (Python 3.11)
                try:
                    item, pending = await asyncio.wait_for(queue.get(), window)
                except TimeoutError:
                    if not resubscribe:
                        continue
                    if nc.stats["reconnects"] != reconnects or loop.time() - heard > 2 * HEARTBEAT_S:
                        break  # a reconnect we were not told of, or a consumer that went silent
                    continue
                heard = loop.time()
                if item is _BEAT:
                    continue
                if item is _RECONNECTED or item is _LOST:
                    if resubscribe:
                        break
                    if item is _LOST:  # a one-off read cannot start again without repeating itself
                        raise ConnectionError(f"an entry of bucket {bucket} was lost on its way here")
                    continue
                if not (ignore_deletes and item.deleted):
                    yield item
                if not snapshot_done and pending == 0:
                    snapshot_done = True
                    yield None
        finally:
            if hub is not None:
                hub.queues.discard(queue)
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()
