"""Fixtures for the chaos scenarios: a multi-machine cluster, test components."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.components.build import build_wat
from tests.netns import netns_unavailable

_why = netns_unavailable()


@pytest.fixture(scope="session")
def wasm() -> dict[str, Path]:
    return {name: build_wat(name) for name in ("adder", "hostile")}


@pytest.fixture
def cluster(tmp_path: Path, lattice: str) -> Iterator[Cluster]:
    """Three machines with a NATS node each (JetStream R3) and a client machine; nothing else yet."""
    if _why:
        pytest.skip(_why)
    cl = Cluster.create(tmp_path, lattice)
    try:
        yield cl
    finally:
        cl.destroy()
