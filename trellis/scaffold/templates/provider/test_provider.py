"""Unit tests of $name with the SDK's harness: no NATS, no lattice."""

from __future__ import annotations

import asyncio

from trellis.providers.sdk import Link
from trellis.providers.sdk.testing import ProviderEnvironment

from $module import build

API = "$package:$world/api"


def test_greets_in_the_language_of_the_link() -> None:
    async def scenario() -> None:
        async with ProviderEnvironment(build()) as env:
            link = Link(source_id="app", target="$name", wit_namespace="$package", wit_package="$world",
                        interfaces=["api"], target_config=["lang"])
            await env.put_link(link, {"language": "fr"})
            assert await env.invoke(f"{API}.greet", "Ann", source="app") == {"ok": "Bonjour, Ann!"}
            assert await env.invoke(f"{API}.greet", "Ann", source="other") == {"ok": "Hello, Ann!"}

    asyncio.run(scenario())
