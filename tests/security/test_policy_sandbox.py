"""Attack: a component reaches the network or the filesystem without a grant.

WASI is deny-by-default: a component gets no sockets, no name lookups, no files and no
environment unless its start grants them (``--preopen``, ``--env``). The `prober`
component (Python, componentize-py) tries each; the test listens on a real socket and
plants a real file, and checks that nothing got through, then that a grant does open
exactly what it names (so the probes themselves work).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.components.build import build_python

#: builds and compiles a Python component: seconds when cached, minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def _cli(cli, *args: str, timeout: float = 60.0):
    return await asyncio.to_thread(cli, *args, timeout=timeout)


async def _call(cli, *args: object, cid: str = "prober"):
    """{"ok": value} or {"err": text}: `trellis call` prints the result on stdout, an err on stderr (exit 1)."""
    out = await _cli(cli, "call", cid, str(args[0]), json.dumps(list(args[1:])))
    if out.returncode == 0:
        return json.loads(out.stdout)
    assert out.returncode == 1 and out.stderr.startswith('"'), out.stderr  # a WIT err, not a failed call
    return {"err": json.loads(out.stderr)}


async def test_no_network_or_files_without_a_grant(nats_server, lattice, hosts, cli, tmp_path: Path):
    prober = await asyncio.to_thread(build_python, "prober")
    connections: list[bytes] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's data")
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "hello.txt").write_text("granted data")
    try:
        h = await hosts.start()
        # the first start compiles the Python component (seconds; minutes on a loaded machine)
        out = await _cli(cli, "start", "component", str(prober), "prober", "--host-id", h.id,
                         "--wait-timeout", "300", timeout=320)
        assert out.returncode == 0, out.stderr

        # the host refuses even to create a socket (wasi:sockets answers access-denied)
        assert await _call(cli, "connect", "127.0.0.1", port) == {"err": "PermissionError: [Errno 2] Permission denied"}
        resolved = await _call(cli, "resolve", "localhost")
        assert "err" in resolved, resolved
        for path in (str(secret), "/etc/passwd", str(tmp_path)):
            assert "err" in await _call(cli, "read-file", path), path
        for path in ("/", ".", str(tmp_path)):
            assert "err" in await _call(cli, "list-dir", path), path

        # a grant opens what it names, and only that (so the probes above could have succeeded)
        out = await _cli(cli, "start", "component", str(prober), "granted", "--host-id", h.id,
                         "--preopen", f"{granted}:/data", "--wait-timeout", "300", timeout=320)
        assert out.returncode == 0, out.stderr
        assert await _call(cli, "read-file", "/data/hello.txt", cid="granted") == {"ok": "granted data"}
        assert await _call(cli, "list-dir", "/data", cid="granted") == {"ok": ["hello.txt"]}
        assert "err" in await _call(cli, "read-file", str(secret), cid="granted")
        assert "err" in await _call(cli, "read-file", "/data/../host-secret.txt", cid="granted")
        assert "err" in await _call(cli, "connect", "127.0.0.1", port, cid="granted")
        assert connections == []  # nothing ever reached the listener
    finally:
        server.close()
        await server.wait_closed()
