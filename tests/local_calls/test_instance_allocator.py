"""Both instance allocators serve a host's calls (a link between two components on one worker),
and the host's setting reaches its workers' engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.interfaces.client import LatticeClient

from .test_colocated import RUN, chain


def _reserved_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) / 2**20
    raise AssertionError("no VmSize")


@pytest.mark.parametrize("allocator", ["on-demand", "pooling"])
async def test_both_allocators_serve_linked_calls(nats_server, lattice, hosts, wasm, allocator):
    h = await hosts.start(workers=1, instance_allocator=allocator)
    async with LatticeClient(nats_server.url, lattice) as c:
        await chain(c, wasm, max_instances=4)
        assert [await c.call("first", RUN, s) for s in ("a", "", "ü" * 3000)] == ["a", "", "ü" * 3000]
    [worker] = h.components.pool.pids()
    # a pooled engine reserves address space for its slots up front (~1 TiB); on demand, a worker has a few GiB
    assert (_reserved_gib(worker) > 512) == (allocator == "pooling")
