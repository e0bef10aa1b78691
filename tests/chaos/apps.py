"""Manifests and lattice probes the chaos scenarios share."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from trellis.interfaces.client import LatticeClient


def spread_app(name: str, image: str | Path, instances: int, *, version: str = "v1",
               component: str = "svc") -> str:
    """One component spread over every host (a `spreadscaler` with no requirements)."""
    return f"""\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: {version}
spec:
  components:
    - name: {component}
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
"""


async def placements(c: LatticeClient, component_id: str, timeout_s: float = 0.5) -> dict[str, int]:
    """host id → max_instances of ``component_id``, as the live hosts answer a ping now."""
    return {h.id: comp.max_instances for h in await c.get_hosts(timeout_s=timeout_s)
            for comp in h.components if comp.id == component_id}


async def until(cond, timeout: float, what: str, interval: float = 0.1):
    """Poll ``cond`` (sync or async) until truthy; return (value, seconds it took)."""
    t0 = time.monotonic()
    last = None
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value, time.monotonic() - t0
        last = value
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def stream_replicas(c: LatticeClient, lattice: str) -> dict[str, int]:
    """Every JetStream stream of the lattice (KV buckets, object stores) → its replica count."""
    assert c.nc is not None
    js = c.nc.jetstream(timeout=5)
    out = {}
    for info in await js.streams_info():
        name = info.config.name or ""
        if f"TRELLIS_{lattice}_" in name:
            out[name] = info.config.num_replicas or 1
    return out


async def stream_consumers(c: LatticeClient, lattice: str) -> dict[str, int]:
    """Every JetStream stream of the lattice → how many consumers it has now (watches, readers)."""
    assert c.nc is not None
    js = c.nc.jetstream(timeout=5)
    return {info.config.name or "": info.state.consumer_count for info in await js.streams_info()
            if f"TRELLIS_{lattice}_" in (info.config.name or "")}
