"""Fixtures shared by every test: a real nats-server, lattices, hosts, the CLI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from trellis.natsserver import NatsServer

from .harness import HostFactory, run_cli


def pytest_configure(config: pytest.Config) -> None:
    # Tests that run Wasm in this process do it as a worker does: with wasmtime-py patched
    # (tests/runtime/test_wasmtime_reliance.py checks that importing the runtime alone does not).
    from trellis.host.runtime import wasmtime_patches

    wasmtime_patches.apply()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server (JetStream) for the session; tests isolate by lattice."""
    store = tmp_path_factory.mktemp("nats")
    server = NatsServer(port=0, store_dir=store, log_file=store / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that kill or restart it."""
    server = NatsServer(port=0, store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lattice() -> str:
    """A lattice name no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def hosts(nats_server: NatsServer, lattice: str, tmp_path: Path) -> AsyncIterator[HostFactory]:
    factory = HostFactory(nats_server.url, lattice, tmp_path)
    yield factory
    await factory.close()


@pytest.fixture
def cli(nats_server: NatsServer, lattice: str):
    """Run the real `trellis` CLI against this test's lattice."""
    env = {"TRELLIS_NATS_URL": nats_server.url, "TRELLIS_LATTICE": lattice}

    def run(*args: str, **kw):
        return run_cli(*args, env={**env, **kw.pop("env", {})}, **kw)

    return run


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Every child process a test starts must be gone when it ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before]
    alive = []
    for p in leaked:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline()[:6])}")
        except psutil.NoSuchProcess:
            continue
        p.kill()
    assert not alive, f"test leaked processes: {alive}"
