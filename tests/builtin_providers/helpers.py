"""Helpers shared by the built-in provider tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from trellis.interfaces.links import Link
from trellis.interfaces.resources import parse_address
from trellis.providers.builtin._common.health import Prober
from trellis.providers.sdk import Provider
from trellis.providers.sdk.testing import ProviderEnvironment


def prober_of(provider: Provider) -> Prober:
    """The background health prober behind a built-in provider's health callback."""
    return provider.callback("health").__self__.prober


def kv_link(source: str = "comp", target: str = "kv", *, config: str | None = "kvcfg", name: str = "default") -> Link:
    return Link(source_id=source, target=target, name=name, wit_namespace="wasi", wit_package="keyvalue",
                interfaces=["atomics", "batch", "store"], target_config=[config] if config else [])


def sql_link(source: str = "comp", target: str = "sql", *, config: str | None = "sqlcfg") -> Link:
    return Link(source_id=source, target=target, wit_namespace="trellis", wit_package="sql", interfaces=["query"],
                target_config=[config] if config else [])


async def invoke(env: ProviderEnvironment, address: str, *args: Any, source: str = "comp") -> Any:
    """``env.invoke`` that also reaches resource functions (``ns:pkg/iface.bucket.get``).

    ``ProviderEnvironment.invoke`` splits the address at its last dot, which
    cuts ``bucket.get`` in two; resource functions are called through their
    handler with a context built for the right function instead.
    """
    interface, function = parse_address(address)
    if "." not in function:
        return await env.invoke(address, *args, source=source)
    defn = env.provider.find(interface, function)
    assert defn is not None, f"{env.provider.name} does not export {address}"
    ctx = dataclasses.replace(env.context(f"{interface}.x", source=source), function=function)
    return await defn.handler(*args, ctx=ctx)
