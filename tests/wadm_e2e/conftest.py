"""Fixtures for wadm end to end: a real nats-server, in-process hosts, real controllers, real components."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.components.build import build_wat
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.wadm_client import WadmClient
from trellis.natsserver import NatsServer
from trellis.wadm.controller import Controller, ControllerSettings

ECHO_PROVIDER = Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py"


@pytest.fixture(scope="session")
def wasm() -> dict[str, Path]:
    return {name: build_wat(name) for name in ("adder", "chain", "middle", "tail")}


class Controllers:
    """Starts wadm controllers in-process on one lattice and closes them all afterwards."""

    def __init__(self, nats_url: str, lattice: str) -> None:
        self.nats_url = nats_url
        self.lattice = lattice
        self.started: list[Controller] = []

    async def start(self, **overrides: Any) -> Controller:
        settings = ControllerSettings(
            lattice=self.lattice, nats=NatsSettings(url=self.nats_url),
            tick_s=overrides.pop("tick_s", 0.5), lease_ttl_s=overrides.pop("lease_ttl_s", 2.0),
            backoff_max_s=overrides.pop("backoff_max_s", 2.0), **overrides)
        ctl = Controller(settings)
        self.started.append(ctl)
        await ctl.start()
        return ctl

    async def close(self) -> None:
        await asyncio.gather(*(c.close(reason="test teardown") for c in self.started))
        for c in self.started:
            assert len(c.tasks) == 0, f"controller {c.id} leaked tasks"


@pytest.fixture
async def controllers(nats_server: NatsServer, lattice: str) -> AsyncIterator[Controllers]:
    factory = Controllers(nats_server.url, lattice)
    yield factory
    await factory.close()


@pytest.fixture
async def wadm_client(nats_server: NatsServer, lattice: str) -> AsyncIterator[WadmClient]:
    async with LatticeClient(nats_server.url, lattice) as c:
        yield WadmClient(c)


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a manifest (dedented) into the test's directory; returns its path."""

    def write(text: str, name: str = "app.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write
