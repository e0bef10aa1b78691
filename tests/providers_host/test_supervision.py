"""Hosts run providers as supervised processes: start, call, crash → restart, stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from trellis.interfaces.client import ControlError, LatticeClient
from trellis.interfaces.errors import ErrorCode

from ..harness import eventually

PROVIDER = str(Path(__file__).with_name("echo_provider.py"))
ECHO = "test:echo/echo"


async def test_provider_started_called_restarted_and_stopped(nats_server, lattice, hosts, monkeypatch):
    monkeypatch.setenv("TRELLIS_TEST_SECRET", "do-not-leak")
    h = await hosts.start()
    h.providers.health_interval_s = 0.2
    async with LatticeClient(nats_server.url, lattice) as c:
        out = await c.start_provider(PROVIDER, "echo", host_id=h.id)
        assert out["provider_id"] == "echo"
        assert await c.call("echo", f"{ECHO}.echo", "hi") == "hi"
        # a clean environment: the host's secrets do not reach the provider
        assert await c.call("echo", f"{ECHO}.env", "TRELLIS_TEST_SECRET") is None
        inv = await c.get_inventory(h.id)
        assert [(p.id, p.status) for p in inv.providers] == [("echo", "running")]

        first = await c.call("echo", f"{ECHO}.pid")
        os.kill(first, signal.SIGKILL)  # the provider dies; the host restarts it with backoff

        async def restarted() -> bool:
            try:
                return await c.call("echo", f"{ECHO}.pid", timeout_s=2) != first
            except Exception:
                return False

        await eventually(restarted, 20, what="provider restarted")
        assert h.providers.running["echo"].restarts == 1

        await c.stop_provider("echo")
        assert (await c.get_inventory(h.id)).providers == []


async def test_bad_provider_refs_and_crashing_start(nats_server, lattice, hosts, tmp_path):
    h = await hosts.start()
    crash = tmp_path / "crash.py"
    crash.write_text("raise SystemExit(3)\n")
    async with LatticeClient(nats_server.url, lattice) as c:
        with pytest.raises(ControlError) as err:
            await c.start_provider("builtin:no-such-thing", "x", host_id=h.id)
        assert err.value.code == ErrorCode.NOT_FOUND and "no built-in provider" in err.value.message
        with pytest.raises(ControlError) as err:
            await c.start_provider("oci://nope", "x", host_id=h.id)
        assert "unsupported provider reference" in err.value.message
        with pytest.raises(ControlError) as err:
            await c.start_provider(str(crash), "crasher", host_id=h.id)
        assert "exited with 3 before it became healthy" in err.value.message
        assert (await c.get_inventory(h.id)).providers == []
