"""LatticeStore against a real nats-server (JetStream KV): links, config, events, watch, durability."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import nats
import pytest

from trellis.interfaces import subjects
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.events import Event
from trellis.interfaces.lattice_config import LatticeConfigError
from trellis.interfaces.links import Link, LinkConflictError
from trellis.interfaces.store import ConfigChange, LatticeStore, LinkChange, StoreError, StoreSettings, Synced

from ..harness import eventually


def mk(**kw) -> Link:
    fields = dict(source_id="comp", target="kv-redis", wit_namespace="wasi", wit_package="keyvalue",
                  interfaces=["store"])
    fields.update(kw)
    return Link(**fields)


@contextlib.asynccontextmanager
async def watching(changes: AsyncGenerator[Any, None]) -> AsyncIterator[list[Any]]:
    """Every change of ``changes`` (a store watch, not started yet), appended to the list this yields
    as it comes, by a task of its own until the block ends (a failure of the watch is raised then)."""
    got: list[Any] = []

    async def collect() -> None:
        async with contextlib.aclosing(changes) as it:
            async for change in it:
                got.append(change)

    task = asyncio.create_task(collect())
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def store(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    yield LatticeStore(nc, lattice, source="test")
    await nc.close()


async def test_put_list_filter_replace_delete(store):
    a = await store.put_link(mk(interfaces=["store", "atomics"], target_config=["redis"]))
    b = await store.put_link(mk(source_id="other", target="kv-mem"))
    c = await store.put_link(mk(target="kv-mem", interfaces=["batch"]))  # same group, disjoint interfaces
    assert await store.list_links() == sorted([a, b, c], key=lambda lk: lk.identity)
    assert await store.list_links(source="comp") == [c, a]
    assert await store.list_links(target="kv-mem") == [c, b]
    assert await store.list_links(source="comp", target="kv-redis") == [a]

    a2 = await store.put_link(mk(interfaces=["store"], target_config=["redis", "tuning"]))  # same identity
    assert await store.list_links(target="kv-redis") == [a2]

    assert await store.delete_link("comp", "wasi", "keyvalue", target="kv-mem") == [c]
    assert await store.list_links(source="comp") == [a2]
    assert await store.delete_link("comp", "wasi", "keyvalue") == [a2]
    assert await store.delete_link("comp", "wasi", "keyvalue") == []  # idempotent
    assert await store.list_links() == [b]
    await store.put_link(a)  # a deleted key can be written again
    assert await store.list_links(source="comp") == [a]


async def test_conflicting_link_is_rejected_and_nothing_changes(store):
    first = await store.put_link(mk(interfaces=["store", "atomics"]))
    with pytest.raises(LinkConflictError) as err:
        await store.put_link(mk(target="kv-mem", interfaces=["atomics"]))
    assert err.value.code == ErrorCode.CONFLICT
    assert "comp -> kv-mem" in err.value.message and "comp -> kv-redis" in err.value.message
    assert await store.list_links() == [first]
    await store.put_link(mk(target="kv-mem", interfaces=["atomics"], name="other"))  # another name is fine


async def test_concurrent_conflicting_puts_let_exactly_one_win(nats_server, lattice):
    """The conflict check and the write are one compare-and-set: racing writers cannot both win."""
    conns = [await nats.connect(nats_server.url) for _ in range(4)]
    stores = [LatticeStore(nc, lattice) for nc in conns]
    try:
        results = await asyncio.gather(
            *(stores[i % 4].put_link(mk(target=f"kv-{i}")) for i in range(12)), return_exceptions=True)
        winners = [r for r in results if isinstance(r, Link)]
        assert len(winners) == 1, results
        assert all(isinstance(r, LinkConflictError) for r in results if not isinstance(r, Link))
        assert await stores[0].list_links() == winners
    finally:
        for nc in conns:
            await nc.close()


async def test_bad_deletes_are_rejected(store):
    with pytest.raises(StoreError) as err:
        await store.delete_link("comp", "Bad:ns", "keyvalue")
    assert err.value.code == ErrorCode.BAD_REQUEST and "WIT namespace" in err.value.message


async def test_config_put_get_delete_resolve(store):
    assert await store.put_config("redis", {"url": "redis://a", "db": "0"}) == {"db": "0", "url": "redis://a"}
    await store.put_config("tuning.v2", {"db": "3"})
    assert await store.get_config("tuning.v2") == {"db": "3"}
    assert await store.resolve_config(["redis", "missing", "tuning.v2"]) == {"url": "redis://a", "db": "3"}
    assert list(await store.list_configs()) == ["redis", "tuning.v2"]
    await store.put_config("redis", {"url": "redis://b"})  # put replaces the whole map
    assert await store.get_config("redis") == {"url": "redis://b"}
    assert await store.delete_config("redis") is True
    assert await store.delete_config("redis") is False
    with pytest.raises(StoreError) as err:
        await store.get_config("redis")
    assert err.value.code == ErrorCode.NOT_FOUND and "config 'redis' not found" in err.value.message


async def test_bad_config_is_rejected(store):
    with pytest.raises(LatticeConfigError, match="invalid config name"):
        await store.put_config("no spaces", {"a": "b"})
    with pytest.raises(LatticeConfigError, match="must be a string"):
        await store.put_config("ok", {"a": 5})
    with pytest.raises(LatticeConfigError, match="must not contain '='"):
        await store.put_config("ok", {"a=b": "c"})


async def test_every_change_is_announced(store, lattice):
    seen: list[Event] = []

    async def on_event(msg):
        seen.append(Event.decode(msg.data))

    sub = await store.nc.subscribe(subjects.events_wildcard(lattice), cb=on_event)
    lk = await store.put_link(mk(target_config=["redis"]))
    await store.put_link(lk)  # unchanged: no event
    await store.put_config("redis", {"url": "x"})
    await store.delete_link("comp", "wasi", "keyvalue")
    await store.delete_config("redis")
    await eventually(lambda: len(seen) >= 4, what="four events")
    await sub.unsubscribe()
    assert [e.type for e in seen] == ["linkdef_set", "config_set", "linkdef_deleted", "config_deleted"]
    assert seen[0].data == lk.model_dump(mode="json") and seen[0].source == "test"
    assert seen[1].data == {"config_name": "redis", "keys": ["url"]}  # no values: config may hold secrets
    assert seen[2].data["target"] == "kv-redis"
    assert seen[3].data == {"config_name": "redis"}


async def test_watch_gives_current_state_then_changes(store):
    await store.put_link(mk())
    await store.put_config("redis", {"url": "x"})
    async with watching(store.watch()) as got:
        await eventually(lambda: sum(isinstance(c, Synced) for c in got) == 2, what="both buckets synced")
        assert LinkChange("put", mk(), got[0].revision) in got
        assert any(isinstance(c, ConfigChange) and c.values == {"url": "x"} for c in got)
        got.clear()
        await store.put_link(mk(interfaces=["store", "atomics"]))
        await store.put_link(mk(target="kv-mem", interfaces=["batch"]))
        await store.delete_link("comp", "wasi", "keyvalue")
        await store.delete_config("redis")
        await eventually(lambda: len(got) >= 5, what="five changes")
        kinds = [(c.kind, c.link.target if isinstance(c, LinkChange) else c.name) for c in got]
        assert kinds[:2] == [("put", "kv-redis"), ("put", "kv-mem")]
        assert sorted(kinds[2:4]) == [("deleted", "kv-mem"), ("deleted", "kv-redis")]
        assert kinds[4] == ("deleted", "redis")


async def test_watch_links_filters_by_source_and_target(store):
    await store.put_link(mk())
    await store.put_link(mk(source_id="other"))
    await store.put_link(mk(source_id="third", target="kv-mem"))
    async with contextlib.aclosing(store.watch_links(source="other")) as it:
        first = [c async for c in _until_synced(it)]
    assert [c.link.source_id for c in first] == ["other"]
    async with contextlib.aclosing(store.watch_links(target="kv-mem")) as it:
        first = [c async for c in _until_synced(it)]
    assert [c.link.source_id for c in first] == ["third"]


async def _until_synced(it):
    async for c in it:
        if isinstance(c, Synced):
            return
        yield c


async def test_buckets_use_the_settings(nats_server, lattice, monkeypatch):
    monkeypatch.setenv("TRELLIS_KV_HISTORY", "5")
    nc = await nats.connect(nats_server.url)
    try:
        store = LatticeStore(nc, lattice, settings=StoreSettings.from_env())
        await store.put_config("a", {"k": "v"})
        status = await (await store.bucket("config")).status()
        assert status.history == 5 and status.bucket == subjects.bucket(lattice, "config")
        assert status.stream_info.config.num_replicas == 1
    finally:
        await nc.close()
    with pytest.raises(ValueError, match="replicas must be 1-5"):
        StoreSettings.from_env(replicas=7)


async def test_links_and_config_survive_a_server_restart(fresh_nats, lattice):
    nc = await nats.connect(fresh_nats.url)
    store = LatticeStore(nc, lattice)
    lk = await store.put_link(mk(target_config=["redis"]))
    await store.put_config("redis", {"url": "redis://a"})
    await nc.close()

    fresh_nats.stop()
    fresh_nats.start()

    nc = await nats.connect(fresh_nats.url)
    try:
        store = LatticeStore(nc, lattice)
        assert await store.list_links() == [lk]
        assert await store.get_config("redis") == {"url": "redis://a"}
        with pytest.raises(LinkConflictError):  # the conflict check sees the stored link
            await store.put_link(mk(target="kv-mem"))
    finally:
        await nc.close()


async def test_without_jetstream_the_error_says_so(tmp_path, lattice):
    from trellis.natsserver import NatsServer

    server = NatsServer(port=0, jetstream=False, log_file=tmp_path / "nats.log").start()
    try:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(StoreError, match="JetStream is not available"):
                await LatticeStore(nc, lattice).list_links()
        finally:
            await nc.close()
    finally:
        server.stop()


async def test_watch_catches_up_after_a_server_restart(fresh_nats, lattice):
    """nats-py's own watcher would notice a restart only after missed heartbeats; ours re-reads at once."""
    nc = await nats.connect(fresh_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    store = LatticeStore(nc, lattice)
    kept, dropped = mk(), mk(source_id="gone")
    await store.put_link(kept)
    await store.put_link(dropped)
    other = None
    try:
        async with watching(store.watch_links()) as got:
            await eventually(lambda: Synced("links") in got, what="first read")
            got.clear()
            fresh_nats.stop()
            fresh_nats.start()
            other = await nats.connect(fresh_nats.url)
            writer = LatticeStore(other, lattice)
            await writer.delete_link("gone", "wasi", "keyvalue")
            await writer.put_link(mk(source_id="new"))
            await eventually(lambda: len(got) >= 2, timeout=10, what="changes after the restart")
            assert sorted((c.kind, c.link.source_id) for c in got) == [("deleted", "gone"), ("put", "new")]
            assert all(c.link.source_id != "comp" for c in got)  # unchanged links are not repeated
    finally:
        if other is not None:
            await other.close()
        await nc.close()


async def test_quiet_watch_polls_nothing_and_recovers_a_lost_consumer(nats_server, lattice, monkeypatch):
    """Issue 16 (idle CPU): a watch is woken only by entries and the server's idle heartbeats, with no
    flow-control poll (nats-py's ordered consumer ran one every 250 ms per watch); a consumer that goes
    away without the connection noticing (its server died in a cluster) is noticed by the missing
    heartbeats, and the bucket is read again: nothing written meanwhile is missed."""
    from trellis.interfaces import kv_watch

    monkeypatch.setattr(kv_watch, "HEARTBEAT_S", 0.3)
    nc = await nats.connect(nats_server.url)
    store = LatticeStore(nc, lattice)
    await store.put_link(mk())
    try:
        async with watching(store.watch_links()) as got:
            await eventually(lambda: Synced("links") in got, what="first read")
            polls = [t for t in asyncio.all_tasks() if "flow_control" in repr(t.get_coro())]
            assert polls == [], polls
            stream = f"KV_{subjects.bucket(lattice, 'links')}"
            jsm = nc.jsm()
            consumers = await jsm.consumers_info(stream)
            assert len(consumers) == 1
            await jsm.delete_consumer(stream, consumers[0].name)  # gone, the connection still up
            await store.put_link(mk(source_id="meanwhile"))  # nobody delivers this to the old consumer
            await eventually(lambda: any(isinstance(c, LinkChange) and c.link.source_id == "meanwhile" for c in got),
                             timeout=10, what="the change made while the consumer was gone")
    finally:
        await nc.close()
