"""Provider processes: the stdin bootstrap a host will use, flags for development, exit codes.

The provider is the runnable example in examples/custom-provider.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import nats
import pytest

from trellis.interfaces.control import CtlReply
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcClient
from trellis.interfaces.store import LatticeStore
from trellis.providers.sdk import provider_health

from ..harness import REPO

EXAMPLE = REPO / "examples" / "custom-provider"
STORE = "example:kv/store"


def clean_env() -> dict[str, str]:
    """What a host gives a provider: nothing but a path and where the code is."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": f"{EXAMPLE}{os.pathsep}{REPO}"}


class ProviderProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str, stdin: bytes | None = None) -> ProviderProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kv_memory", *args, cwd=EXAMPLE, env=clean_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        return cls(proc)

    async def line(self, timeout: float = 20.0) -> dict:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"provider exited ({await self.proc.wait()}): {err.decode()[-2000:]}")
            try:
                return json.loads(raw)
            except ValueError:
                continue

    async def stop(self, timeout: float = 15.0, *, signal_it: bool = True) -> tuple[int, str]:
        """SIGTERM (unless it should exit by itself), wait, collect stderr."""
        if signal_it and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        err = await self.proc.stderr.read() if self.proc.stderr else b""
        return code, err.decode()


async def test_stdin_bootstrap_runs_the_example_provider(nats_server, lattice):
    comp_link = Link(source_id="comp", target="kv-1", wit_namespace="example", wit_package="kv",
                     interfaces=["store"], target_config=["small"])
    bootstrap = {
        "version": 1, "lattice": lattice, "provider_id": "kv-1", "host_id": "host-x",
        "nats": {"url": nats_server.url}, "links": [comp_link.model_dump()],
        "configs": {"small": {"max-keys": "1"}}, "shutdown_grace_s": 2, "log_level": "debug",
        "some_future_field": {"ignored": True},
    }
    nc = await nats.connect(nats_server.url)
    store = LatticeStore(nc, lattice)  # the bootstrap is a snapshot of what is stored
    await store.put_link(comp_link)
    await store.put_config("small", {"max-keys": "1"})
    # pretty-printed over several lines, as a host might write it
    p = await ProviderProcess.start(stdin=json.dumps(bootstrap, indent=2).encode())
    client = RpcClient(nc, lattice, source="comp")
    try:
        started = await p.line()
        assert started["event"] == "provider_started" and started["provider_id"] == "kv-1"
        assert started["host_id"] == "host-x"
        assert await client.call("kv-1", f"{STORE}.set", ["b", "k1", b"v"], timeout_s=5) == {"ok": None}
        assert await client.call("kv-1", f"{STORE}.get", ["b", "k1"], timeout_s=5) == b"v"
        quota = await client.call("kv-1", f"{STORE}.set", ["b", "k2", b"v"], timeout_s=5)
        assert "quota-exceeded" in quota["err"]  # the link's config reached the process
        msg = await nc.request(provider_health(lattice, "kv-1", "host-x"), b"", timeout=5)
        reply = CtlReply.model_validate_json(msg.data)
        assert reply.response["healthy"] and reply.response["message"] == "1 keys"
    finally:
        await client.close()
        await nc.close()
        code, err = await p.stop()
    assert code == 0, err
    assert "stopping with 1 keys" in err  # on_shutdown ran


async def test_flags_for_development(nats_server, lattice):
    p = await ProviderProcess.start("--nats-url", nats_server.url, "--lattice", lattice,
                                    "--provider-id", "kv-dev", "--config", "a=b")
    nc = await nats.connect(nats_server.url)
    client = RpcClient(nc, lattice, source="comp")
    try:
        assert (await p.line())["provider_id"] == "kv-dev"
        assert await client.call("kv-dev", f"{STORE}.keys", ["b"], timeout_s=5) == []
    finally:
        await client.close()
        await nc.close()
        code, err = await p.stop()
    assert code == 0, err
    stopped = json.loads([ln for ln in (await p.proc.stdout.read()).decode().splitlines() if ln][-1]) \
        if p.proc.stdout else {}
    assert stopped.get("event") == "provider_stopped" and stopped.get("reason") == "signal SIGTERM"


@pytest.mark.parametrize("stdin,words", [
    (b"{not json", "bootstrap is not valid JSON"),
    (b'{"lattice": "x"}', "provider_id: Field required"),
    (b'{"provider_id": "bad id"}', "invalid provider id 'bad id'"),
    (b'{"provider_id": "p", "version": 99}', "bootstrap version 99 is newer"),
    (b"", "stdin closed before a bootstrap was written"),
])
async def test_bad_bootstraps_exit_2_with_the_reason(stdin, words):
    p = await ProviderProcess.start(stdin=stdin)
    code, err = await p.stop(signal_it=False)
    assert code == 2 and words in err, err


async def test_unreachable_nats_exits_1(lattice):
    p = await ProviderProcess.start(stdin=json.dumps({
        "provider_id": "kv", "lattice": lattice, "nats": {"url": "nats://127.0.0.1:1"}}).encode())
    code, err = await p.stop(timeout=30, signal_it=False)
    assert code == 1 and "could not start" in err, err


def test_the_example_unit_tests_pass():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_kv_memory.py"],
                       cwd=EXAMPLE, env={**os.environ, **clean_env()}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
