"""Unit tests of the example provider: no NATS, no lattice (ProviderEnvironment)."""

from __future__ import annotations

import pytest
from kv_memory import build

from trellis.providers.sdk import Link, ProviderError
from trellis.providers.sdk.testing import ProviderEnvironment

STORE = "example:kv/store"


def link_from(component: str, *config_names: str) -> Link:
    return Link(source_id=component, target="kv-memory", wit_namespace="example", wit_package="kv",
                interfaces=["store"], target_config=list(config_names))


async def test_components_have_their_own_keys():
    async with ProviderEnvironment(build()) as env:
        await env.invoke(f"{STORE}.set", "b", "k", b"v1", source="comp-a")
        await env.invoke(f"{STORE}.set", "b", "k", b"v2", source="comp-b")
        assert await env.invoke(f"{STORE}.get", "b", "k", source="comp-a") == b"v1"
        assert await env.invoke(f"{STORE}.keys", "b", source="comp-b") == ["k"]


async def test_link_config_caps_keys():
    async with ProviderEnvironment(build()) as env:
        await env.put_link(link_from("comp-a", "small"), {"max-keys": "1"})
        assert await env.invoke(f"{STORE}.set", "b", "k1", b"x", source="comp-a") == {"ok": None}
        result = await env.invoke(f"{STORE}.set", "b", "k2", b"x", source="comp-a")
        assert "quota-exceeded" in result["err"]


async def test_bad_config_is_a_typed_error():
    async with ProviderEnvironment(build()) as env:
        await env.put_link(link_from("comp-a", "broken"), {"max-keys": "lots"})
        with pytest.raises(ProviderError) as err:
            await env.invoke(f"{STORE}.set", "b", "k", b"x", source="comp-a")
        assert err.value.code == "bad-config"


async def test_changes_are_announced_to_linked_components():
    async with ProviderEnvironment(build()) as env:
        env.on_call(lambda call: None)
        await env.put_link(Link(source_id="kv-memory", target="watcher", wit_namespace="example",
                                wit_package="kv", interfaces=["events"]))
        await env.invoke(f"{STORE}.set", "b", "k", b"x", source="comp-a")
        assert [(c.target, c.operation, c.args) for c in env.calls] == [
            ("watcher", "example:kv/events.changed", ["b", "k"])]


async def test_unlinking_drops_the_data_and_health_counts_keys():
    async with ProviderEnvironment(build()) as env:
        await env.put_link(link_from("comp-a"))
        await env.invoke(f"{STORE}.set", "b", "k", b"x", source="comp-a")
        assert await env.health() == (True, "1 keys")
        await env.delete_link(link_from("comp-a"))
        assert await env.invoke(f"{STORE}.get", "b", "k", source="comp-a") is None
