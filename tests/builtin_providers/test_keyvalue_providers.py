"""keyvalue-nats and keyvalue-redis with ProviderEnvironment: one behaviour, two real backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from trellis.natsserver import NatsServer
from trellis.providers.builtin import keyvalue_nats, keyvalue_redis
from trellis.providers.builtin._common.kv import BucketMap, KvError
from trellis.providers.builtin._common.nats import NatsTarget, reserved_bucket, reserved_subject
from trellis.providers.builtin._common.shared import Shared
from trellis.providers.sdk import Provider
from trellis.providers.sdk.testing import ProviderEnvironment

from .backends import RedisServer, free_port
from .helpers import invoke, kv_link, prober_of

MAX_U64 = 2**64 - 1


@dataclass
class Backend:
    name: str
    build: Callable[[], Provider]
    config: dict[str, str]


@pytest.fixture(params=["nats", "redis"])
def backend(request: pytest.FixtureRequest, nats_server: NatsServer, redis_server: RedisServer) -> Backend:
    # both servers are session fixtures named here (not looked up later), so they start before the
    # per-test leak check looks at child processes
    if request.param == "nats":
        return Backend("nats", keyvalue_nats.build, {"url": nats_server.url})
    return Backend("redis", keyvalue_redis.build,
                   {"url": redis_server.url, "key_prefix": f"t{uuid.uuid4().hex[:8]}:"})


@pytest.fixture
async def env(backend: Backend) -> AsyncIterator[ProviderEnvironment]:
    async with ProviderEnvironment(backend.build(), provider_id="kv", configs={"kvcfg": backend.config},
                                   links=[kv_link()]) as e:
        yield e


def bucket() -> str:
    return "b" + uuid.uuid4().hex[:10]


async def test_store_round_trip(env: ProviderEnvironment) -> None:
    b = bucket()
    assert await invoke(env, "wasi:keyvalue/store.open", b) == {"ok": b}
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "k") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.exists", b, "k") == {"ok": False}
    assert await invoke(env, "wasi:keyvalue/store.bucket.set", b, "k", b"\x00value") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "k") == {"ok": b"\x00value"}
    assert await invoke(env, "wasi:keyvalue/store.bucket.exists", b, "k") == {"ok": True}
    assert await invoke(env, "wasi:keyvalue/store.bucket.set", b, "empty", b"") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "empty") == {"ok": b""}
    assert await invoke(env, "wasi:keyvalue/store.bucket.delete", b, "k") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.delete", b, "k") == {"ok": None}  # missing: fine
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "k") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.exists", b, "k") == {"ok": False}


async def test_buckets_do_not_share_keys(env: ProviderEnvironment) -> None:
    b1, b2 = bucket(), bucket()
    await invoke(env, "wasi:keyvalue/store.bucket.set", b1, "k", b"one")
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b2, "k") == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/store.bucket.list-keys", b2, None) == {"ok": {"keys": [], "cursor": None}}


async def test_increment_counts_in_decimal_text_and_never_loses_a_count(env: ProviderEnvironment) -> None:
    b = bucket()
    assert await invoke(env, "wasi:keyvalue/atomics.increment", b, "n", 5) == {"ok": 5}
    assert await invoke(env, "wasi:keyvalue/atomics.increment", b, "n", 0) == {"ok": 5}
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "n") == {"ok": b"5"}
    results = await asyncio.gather(*(invoke(env, "wasi:keyvalue/atomics.increment", b, "c", 1) for _ in range(40)))
    assert sorted(r["ok"] for r in results) == list(range(1, 41))  # every writer saw its own count
    await invoke(env, "wasi:keyvalue/store.bucket.delete", b, "c")
    assert await invoke(env, "wasi:keyvalue/atomics.increment", b, "c", 2) == {"ok": 2}  # deleted: from 0


async def test_increment_refuses_what_is_not_a_u64(env: ProviderEnvironment) -> None:
    b = bucket()
    await invoke(env, "wasi:keyvalue/store.bucket.set", b, "word", b"abc")
    err = await invoke(env, "wasi:keyvalue/atomics.increment", b, "word", 1)
    assert "other" in err["err"] and "word" in err["err"]["other"], err
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "word") == {"ok": b"abc"}  # untouched
    await invoke(env, "wasi:keyvalue/store.bucket.set", b, "big", str(MAX_U64).encode())
    err = await invoke(env, "wasi:keyvalue/atomics.increment", b, "big", 1)
    assert "other" in err["err"], err


async def test_list_keys_follows_cursors(backend: Backend) -> None:
    config = {**backend.config, "list_page_size": "2"}
    async with ProviderEnvironment(backend.build(), provider_id="kv", configs={"kvcfg": config},
                                   links=[kv_link()]) as env:
        b = bucket()
        names = [f"key-{i}" for i in range(7)]
        for n in names:
            await invoke(env, "wasi:keyvalue/store.bucket.set", b, n, b"x")
        seen: set[str] = set()
        cursor = None
        for _ in range(100):
            page = (await invoke(env, "wasi:keyvalue/store.bucket.list-keys", b, cursor))["ok"]
            seen.update(page["keys"])
            cursor = page["cursor"]
            if cursor is None:
                break
        assert cursor is None and seen == set(names)


async def test_batch_functions(env: ProviderEnvironment) -> None:
    b = bucket()
    assert await invoke(env, "wasi:keyvalue/batch.set-many", b, [["a", b"1"], ["b", b"2"], ["c", b"3"]]) == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/batch.get-many", b, ["a", "missing", "c"]) == {
        "ok": [["a", b"1"], None, ["c", b"3"]]}
    assert await invoke(env, "wasi:keyvalue/batch.delete-many", b, ["a", "b", "missing"]) == {"ok": None}
    assert await invoke(env, "wasi:keyvalue/batch.get-many", b, ["a", "b", "c"]) == {"ok": [None, None, ["c", b"3"]]}
    assert await invoke(env, "wasi:keyvalue/batch.get-many", b, []) == {"ok": []}


async def test_pinned_bucket_and_prefix_map_identifiers(backend: Backend) -> None:
    shared = bucket()
    links = [kv_link("pinned", config="pin"), kv_link("prefixed", config="pre"), kv_link("plain", config="plain")]
    configs = {"pin": {**backend.config, "bucket": shared}, "pre": {**backend.config, "bucket_prefix": "p-"},
               "plain": backend.config}
    async with ProviderEnvironment(backend.build(), provider_id="kv", configs=configs, links=links) as env:
        # whatever the identifier, the pinned link uses its one bucket; the handle is the identifier
        assert await invoke(env, "wasi:keyvalue/store.open", "anything", source="pinned") == {"ok": "anything"}
        await invoke(env, "wasi:keyvalue/store.bucket.set", "anything", "k", b"v", source="pinned")
        assert await invoke(env, "wasi:keyvalue/store.bucket.get", shared, "k", source="plain") == {"ok": b"v"}
        # prefixed: identifier x is backend bucket p-x
        await invoke(env, "wasi:keyvalue/store.bucket.set", "x", "k", b"w", source="prefixed")
        assert await invoke(env, "wasi:keyvalue/store.bucket.get", "p-x", "k", source="plain") == {"ok": b"w"}
        bad = await invoke(env, "wasi:keyvalue/store.open", "no spaces", source="plain")
        assert "invalid bucket identifier" in bad["err"]["other"]


async def test_callers_without_a_link_are_denied(env: ProviderEnvironment) -> None:
    b = bucket()
    assert await invoke(env, "wasi:keyvalue/store.open", b, source="stranger") == {"err": {"access-denied": None}}
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "k", source="stranger") == {
        "err": {"access-denied": None}}
    assert (await invoke(env, "wasi:keyvalue/store.open", b))["ok"] == b
    await env.delete_link(kv_link())
    assert await invoke(env, "wasi:keyvalue/store.bucket.get", b, "k") == {"err": {"access-denied": None}}


async def test_bad_link_config_is_the_callers_error(backend: Backend) -> None:
    config = {**backend.config, "list_page_size": "many"}
    async with ProviderEnvironment(backend.build(), provider_id="kv", configs={"kvcfg": config},
                                   links=[kv_link()]) as env:
        err = await invoke(env, "wasi:keyvalue/store.open", "b")
        assert "list_page_size must be a whole number" in err["err"]["other"], err
        ok, message = await env.health()
        assert ok  # nothing unreachable; the bad link is reported
        await env.update_config("kvcfg", backend.config)  # fixed: the link is rebuilt
        assert await invoke(env, "wasi:keyvalue/store.open", "b") == {"ok": "b"}


async def test_health_probes_the_backend(backend: Backend) -> None:
    dead = {"url": f"nats://127.0.0.1:{free_port()}"} if backend.name == "nats" else {
        "url": f"redis://127.0.0.1:{free_port()}/0", "timeout_s": "0.5"}
    links = [kv_link("alive", config="alive"), kv_link("dead", config="dead")]
    provider = backend.build()
    async with ProviderEnvironment(provider, provider_id="kv", configs={"alive": backend.config, "dead": dead},
                                   links=links) as env:
        impl_prober = prober_of(provider)
        ok, message = await impl_prober.check()
        assert not ok and dead["url"].split("//")[1].split("/")[0] in message, message
        err = await invoke(env, "wasi:keyvalue/store.bucket.get", "b", "k", source="dead")
        assert "other" in err["err"], err
        await env.delete_link(links[1])
        ok, message = await impl_prober.check()
        assert ok, message
        assert await env.health() == (True, message)


# --- keyvalue-nats only ----------------------------------------------------------------------


async def test_nats_bucket_creation_can_be_refused(nats_server: NatsServer) -> None:
    config = {"url": nats_server.url, "create": "false"}
    async with ProviderEnvironment(keyvalue_nats.build(), provider_id="kv", configs={"kvcfg": config},
                                   links=[kv_link()]) as env:
        assert await invoke(env, "wasi:keyvalue/store.open", bucket()) == {"err": {"no-such-store": None}}


async def test_nats_keys_must_suit_jetstream(nats_server: NatsServer) -> None:
    async with ProviderEnvironment(keyvalue_nats.build(), provider_id="kv", configs={"kvcfg": {"url": nats_server.url}},
                                   links=[kv_link()]) as env:
        err = await invoke(env, "wasi:keyvalue/store.bucket.set", bucket(), "has space", b"v")
        assert "invalid key 'has space'" in err["err"]["other"]


async def test_nats_refuses_trellis_buckets_on_the_lattice_server(nats_server: NatsServer) -> None:
    from trellis.providers.builtin._common.nats import close_nats, open_nats

    target = NatsTarget((("url", nats_server.url),), is_lattice=True)
    connections: Shared[NatsTarget, Any] = Shared("test", lambda t: open_nats(t, "test"), close_nats)
    connections.attach(target)
    settings = keyvalue_nats.NatsKvSettings.from_config({"url": nats_server.url}, None)
    link = keyvalue_nats.NatsKvLink(
        keyvalue_nats.NatsKvSettings(target, settings.buckets, True, settings.new_buckets, None, 10),
        connections)
    with pytest.raises(keyvalue_nats.AccessDenied):
        await link.open("TRELLIS_default_links")
    await link.open("ordinary")
    await connections.close_all()


def test_reserved_names() -> None:
    assert reserved_bucket("TRELLIS_x_links") and reserved_bucket("trellis_x") and not reserved_bucket("trellisx")
    for subject in ("trellis.default.ctl.host.ping", "$JS.API.INFO", ">", "*.x", "trellis"):
        assert reserved_subject(subject), subject
    for subject in ("orders.created", "_INBOX.abc", "trellisx.y"):
        assert not reserved_subject(subject), subject


def test_bucket_map() -> None:
    assert BucketMap().resolve("a-b_C9") == "a-b_C9"
    assert BucketMap(prefix="app-").resolve("x") == "app-x"
    assert BucketMap(bucket="fixed").resolve("whatever") == "fixed"
    for bad in ("", "a.b", "a b", "x" * 65):
        with pytest.raises(KvError):
            BucketMap().resolve(bad)


async def test_wasmcloud_components_open_buckets_by_link_name(backend: Backend) -> None:
    """wasmCloud's way: a link's config names its bucket (``BUCKET``, wasmCloud's spelling) and the
    component opens it by link name, ``open("default")``; the name of another of its links opens
    that link's bucket. Another component sees the same data in the buckets by their names."""
    main, arch = bucket(), bucket()
    configs = {"main": {**backend.config, "BUCKET": main}, "arch": {**backend.config, "BUCKET": arch},
               "kvcfg": backend.config}
    links = [kv_link(config="main"), kv_link(config="arch", name="archive"), kv_link("other", config="kvcfg")]
    async with ProviderEnvironment(backend.build(), provider_id="kv", configs=configs, links=links) as env:
        assert await invoke(env, "wasi:keyvalue/store.open", "default") == {"ok": "default"}
        assert await invoke(env, "wasi:keyvalue/store.bucket.set", "default", "k", b"today") == {"ok": None}
        assert await invoke(env, "wasi:keyvalue/store.open", "archive") == {"ok": "archive"}
        assert await invoke(env, "wasi:keyvalue/store.bucket.set", "archive", "k", b"last year") == {"ok": None}
        assert await invoke(env, "wasi:keyvalue/store.bucket.get", "default", "k") == {"ok": b"today"}
        for name, value in ((main, b"today"), (arch, b"last year")):
            assert await invoke(env, "wasi:keyvalue/store.bucket.get", name, "k", source="other") == {"ok": value}
