"""Putting built-in providers and test components on hosts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from trellis.interfaces.client import LatticeClient


async def deploy(c: LatticeClient, host_ids: list[str], *, providers: Mapping[str, str] = {},
                 components: Mapping[str, Path] = {}, provider_config: Mapping[str, list[str]] = {}) -> None:
    """Start every provider (id → image) and component (id → wasm) on every host, and wait for them.

    Providers start at once; components one after another (a host fetching one
    wasm for two component ids at the same time trips over its own temp file).
    """
    await asyncio.gather(*(c.start_provider(image, pid, host_id=h, config=list(provider_config.get(pid, [])))
                           for pid, image in providers.items() for h in host_ids))
    for cid, wasm in components.items():
        for h in host_ids:
            await c.start_component(str(wasm), cid, host_id=h)
