"""Imports the host answers itself: wasi:config/runtime from named config, wasi:logging to its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.build import build_app
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.store import LatticeStore

from ..harness import eventually

APP = Path(__file__).parent / "components" / "configlog"


@pytest.fixture(scope="session")
def configlog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_app(APP, tmp_path_factory.mktemp("configlog"))


async def test_config_and_logging_from_the_host(nats_server, lattice, hosts, configlog):
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        await store.put_config("base", {"greeting": "hello", "colour": "blue"})
        await store.put_config("override", {"colour": "green"})
        await c.start_component(str(configlog), "cfg", config=["base", "override"])
        assert await c.call("cfg", "get", "greeting") == "hello"
        assert await c.call("cfg", "get", "colour") == "green"  # later configs win
        assert await c.call("cfg", "get", "missing") is None
        assert await c.call("cfg", "all") == [["colour", "green"], ["greeting", "hello"]]

        await store.put_config("override", {"colour": "red"})  # changes reach running components

        async def red() -> bool:
            return await c.call("cfg", "get", "colour") == "red"

        await eventually(red, 10, what="config update seen by the component")

    logs = h.settings.state_dir / "logs"

    def logged() -> bool:
        return any("[cfg] configlog: looking up greeting" in p.read_text(errors="replace")
                   for p in logs.glob("worker-*.log"))

    await eventually(logged, 10, what="the component's log line in the worker log")
