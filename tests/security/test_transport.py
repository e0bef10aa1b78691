"""Transport, attacked: a plaintext or unauthenticated NATS connection where TLS and
credentials are required; HTTPS on the http-server provider.

The certificates (cryptography) and the operator/account/user JWTs (nkeys) are made
here; nats-server runs with `tls { verify: true }`, or in operator mode with
`resolver: MEMORY`. A whole lattice (a host with its worker and provider processes,
wadm with its keyholder, the CLI) then runs over each.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from tests.components.build import build_wat
from tests.harness import COMPILE_CACHE
from tests.http.helpers import FakeCaller, Response, _Collector, free_port, get
from trellis.host.host import Host
from trellis.host.settings import HostSettings
from trellis.interfaces.connection import NatsSettings, NatsUnreachable, connect
from trellis.natsserver import NatsServer
from trellis.providers.builtin.http_server import HttpServer, build
from trellis.providers.builtin.http_server.tls import TlsError
from trellis.providers.sdk.testing import ProviderEnvironment
from trellis.wadm.controller import Controller, ControllerSettings

from .pki import CertificateAuthority, Operator

ECHO_PROVIDER = Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py"


# --- NATS with TLS and client certificates -------------------------------------------------------


@pytest.fixture
def tls_nats(tmp_path: Path) -> Any:
    ca = CertificateAuthority()
    (tmp_path / "ca.pem").write_text(ca.pem)
    server_cert, server_key = ca.issue("nats", server=True).write(tmp_path, "server")
    client_cert, client_key = ca.issue("trellis-member", server=False).write(tmp_path, "client")
    rogue_cert, rogue_key = CertificateAuthority("rogue").issue("rogue", server=False).write(tmp_path, "rogue")
    conf = tmp_path / "nats.conf"
    conf.write_text(f'tls {{\n  cert_file: "{server_cert}"\n  key_file: "{server_key}"\n'
                    f'  ca_file: "{tmp_path / "ca.pem"}"\n'
                    "  verify: true\n  timeout: 2\n}\n")
    server = NatsServer(port=0, store_dir=tmp_path / "js", config_file=conf, log_file=tmp_path / "nats.log")
    server.start()
    member = NatsSettings(url=f"tls://127.0.0.1:{server.port}", tls_ca=str(tmp_path / "ca.pem"),
                          tls_cert=str(client_cert), tls_key=str(client_key))
    try:
        yield {"server": server, "member": member, "rogue": (str(rogue_cert), str(rogue_key)), "dir": tmp_path}
    finally:
        server.stop()


def _plaintext_session(port: int) -> tuple[dict[str, Any], bytes]:
    """A client that speaks the NATS protocol without TLS: (the server's INFO, all it answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        first = b""
        while not first.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            first += chunk
        info = json.loads(first.split(b" ", 1)[1])
        answered = b""
        try:
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"attacker"}\r\n'
                         b"PING\r\nSUB > 1\r\nPING\r\n")
            while chunk := sock.recv(4096):
                answered += chunk
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
    return info, answered


async def test_a_plaintext_or_uncertified_nats_connection_is_refused_where_tls_is_required(tls_nats: Any) -> None:
    port = tls_nats["server"].port
    # 1. the NATS protocol in plaintext: the server says TLS is required and never answers a PING
    info, answered = await asyncio.to_thread(_plaintext_session, port)
    assert info["tls_required"] is True and info.get("tls_verify") is True
    assert b"PONG" not in answered and b"MSG" not in answered
    # 2. TLS without a client certificate, 3. with one from another CA, 4. not trusting the server's CA
    member: NatsSettings = tls_nats["member"]
    rogue_cert, rogue_key = tls_nats["rogue"]
    for settings in (NatsSettings(url=member.url, tls_ca=member.tls_ca),
                     NatsSettings(url=member.url, tls_ca=member.tls_ca, tls_cert=rogue_cert, tls_key=rogue_key),
                     NatsSettings(url=member.url, tls_cert=member.tls_cert, tls_key=member.tls_key),
                     NatsSettings(url=f"nats://127.0.0.1:{port}")):
        with pytest.raises((NatsUnreachable, ssl.SSLError, OSError)):
            nc = await connect(settings, max_reconnect_attempts=1, connect_timeout=2)
            await nc.close()
    # the member's own settings work
    nc = await connect(member, max_reconnect_attempts=1)
    assert nc.is_connected and nc.connected_server_version.major >= 2
    await nc.close()


async def _lattice(settings: NatsSettings, tmp_path: Path, lattice: str) -> tuple[Host, Controller]:
    host = Host(HostSettings(lattice=lattice, nats=settings, heartbeat_interval_s=0.5, workers=1,
                             compile_cache_dir=COMPILE_CACHE, state_dir=tmp_path / "host"))
    await host.start()
    ctl = Controller(ControllerSettings(lattice=lattice, nats=settings, tick_s=0.5, lease_ttl_s=2.0,
                                        secrets_key_file=str(tmp_path / "secrets.nk")))
    await ctl.start()
    return host, ctl


def _cli_flags(settings: NatsSettings, lattice: str) -> list[str]:
    flags = ["--nats-url", settings.url, "--lattice", lattice]
    for flag, value in (("--nats-tls-ca", settings.tls_ca), ("--nats-tls-cert", settings.tls_cert),
                        ("--nats-tls-key", settings.tls_key), ("--nats-creds", settings.creds_file)):
        if value:
            flags += [flag, value]
    return flags


async def _exercise(settings: NatsSettings, tmp_path: Path) -> None:
    """A host (worker and provider processes), wadm and the CLI, all over ``settings``."""
    lattice = "sec" + uuid.uuid4().hex[:8]
    host, ctl = await _lattice(settings, tmp_path, lattice)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    flags = _cli_flags(settings, lattice)

    async def cli(*args: str, input: str | None = None) -> str:
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trellis.cli.main", *args, *flags],
                                       capture_output=True, text=True, timeout=120, input=input, env=env)
        assert proc.returncode == 0, f"trellis {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    try:
        hosts = json.loads(await cli("get", "hosts", "-o", "json"))
        assert [h["id"] for h in hosts] == [host.id]
        await cli("start", "component", str(build_wat("adder")), "adder")
        assert json.loads(await cli("call", "adder", "add", "[2, 3]")) == 5  # the worker process connected
        await cli("start", "provider", str(ECHO_PROVIDER), "echo")
        assert json.loads(await cli("call", "echo", "test:echo/echo.echo", '["over the wire"]')) == "over the wire"
        await cli("secret", "put", "transport-check", "-", input="sealed\n")
        assert [s["name"] for s in json.loads(await cli("secret", "list", "-o", "json"))] == ["transport-check"]
    finally:
        await ctl.close(reason="test teardown")
        await host.close(reason="test teardown")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_lattice_runs_over_tls_with_client_certificates(tls_nats: Any) -> None:
    await _exercise(tls_nats["member"], tls_nats["dir"])


# --- NATS with operator/account/user JWTs ---------------------------------------------------------


@pytest.fixture
def jwt_nats(tmp_path: Path) -> Any:
    op = Operator()
    system = op.account("SYS", jetstream=False)
    lattice_account = op.account("SHOP")
    other = op.account("OTHER")
    conf = tmp_path / "nats.conf"
    conf.write_text(op.server_config(system))
    server = NatsServer(port=0, store_dir=tmp_path / "js", config_file=conf, log_file=tmp_path / "nats.log")
    server.start()
    creds = tmp_path / "member.creds"
    creds.write_text(lattice_account.user_creds("member"))
    creds.chmod(0o600)
    forged = tmp_path / "forged.creds"
    forged.write_text(lattice_account.user_creds("forged", signer=other))  # claims SHOP, signed by OTHER
    stranger = tmp_path / "stranger.creds"
    stranger.write_text(other.user_creds("stranger"))
    try:
        yield {"server": server, "creds": creds, "forged": forged, "stranger": stranger, "dir": tmp_path}
    finally:
        server.stop()


async def test_an_unauthenticated_or_forged_nats_user_is_refused(jwt_nats: Any) -> None:
    url = jwt_nats["server"].url
    for settings in (NatsSettings(url=url), NatsSettings(url=url, creds_file=str(jwt_nats["forged"]))):
        with pytest.raises((NatsUnreachable, nats.errors.Error), match="Authorization Violation"):
            nc = await connect(settings, max_reconnect_attempts=1)
            await nc.close()
    # a user of another account connects, but sees nothing of this account's lattice
    member = await connect(NatsSettings(url=url, creds_file=str(jwt_nats["creds"])), max_reconnect_attempts=1)
    stranger = await connect(NatsSettings(url=url, creds_file=str(jwt_nats["stranger"])), max_reconnect_attempts=1)
    try:
        seen: list[bytes] = []

        async def keep(msg: Any) -> None:
            seen.append(msg.data)

        await stranger.subscribe(">", cb=keep)
        await stranger.flush()
        await member.publish("trellis.default.evt.host_heartbeat", b"member-only")
        await member.flush()
        got = await member.request("$JS.API.INFO", b"", timeout=5)  # JetStream for the member's account
        assert b"memory" in got.data
        await stranger.flush()
        assert b"member-only" not in seen
    finally:
        await member.close()
        await stranger.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_lattice_runs_with_jwt_creds(jwt_nats: Any) -> None:
    await _exercise(NatsSettings(url=jwt_nats["server"].url, creds_file=str(jwt_nats["creds"])), jwt_nats["dir"])


# --- HTTPS on the http-server provider -------------------------------------------------------------


async def _https_responses(port: int, ca_pem: str, requests: list[bytes]) -> tuple[list[Response], bool]:
    """Send ``requests`` over one TLS connection; (responses, the connection was still open after them)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    collector = _Collector()
    import httptools

    collector.parser = httptools.HttpResponseParser(collector)
    try:
        for req in requests:
            writer.write(req)
            await writer.drain()
            want = len(collector.done) + 1
            while len(collector.done) < want:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, "the HTTPS connection closed early"
                collector.parser.feed_data(chunk)
        return list(collector.done), not reader.at_eof()
    finally:
        writer.close()


async def test_https_on_the_http_server_from_its_secrets_with_keep_alive(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    site = ca.issue("localhost", server=True)
    caller = FakeCaller()
    state = HttpServer(lambda info: caller)
    env = ProviderEnvironment(build(state), provider_id="http-server",
                              secrets={"tls_cert": site.cert_pem, "tls_key": site.key_pem})
    port = free_port()
    from trellis.interfaces.links import Link

    link = Link(source_id="http-server", target="app", name="web", wit_namespace="trellis", wit_package="http",
                interfaces=["incoming-handler"], source_config=["web"])
    async with env:
        await env.put_link(link, {"address": f"127.0.0.1:{port}"})
        ok, message = await env.health()
        assert ok and f"https://127.0.0.1:{port}" in message
        responses, still_open = await _https_responses(port, ca.pem, [get("/a"), get("/b")])
        assert [r.status for r in responses] == [200, 200] and still_open  # HTTP/1.1 keep-alive over TLS
        assert [c["target"] for c in caller.calls] == ["app", "app"]
        # plain HTTP to the HTTPS port is not served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/plain"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert not answer.startswith(b"HTTP/1.1 200")
        assert len(caller.calls) == 2
    # only one of the two secrets: the provider refuses to start rather than serve plain HTTP
    half = ProviderEnvironment(build(HttpServer(lambda info: FakeCaller())), provider_id="http-server",
                               secrets={"tls_cert": site.cert_pem})
    with pytest.raises(TlsError, match="tls_key is missing"):
        await half.start()


# --- trellis up on one machine -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trellis_up_listens_on_loopback_only_and_keeps_its_keys_private(tmp_path: Path) -> None:
    import signal

    import psutil

    from tests.harness import run_cli
    from tests.lattice.test_up import _free_port, _read_until
    from trellis.kit import procs

    port = _free_port()
    state = tmp_path / "state"
    up = subprocess.Popen(procs.trellis_argv("up", "--state-dir", str(state), "--nats-port", str(port)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = _read_until(up, "Press Ctrl-C", 60)
        assert "secrets keyholder key" in banner and "warning" not in banner  # bound to loopback: nothing to warn of
        env = {"TRELLIS_NATS_URL": f"nats://127.0.0.1:{port}", "TRELLIS_LATTICE": "default"}
        put = run_cli("secret", "put", "up-check", "value-of-up", env=env)  # wadm (the keyholder) answers by now
        assert put.returncode == 0, put.stderr
        tree = [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
        listening = []
        for proc in tree:
            try:
                listening += [(proc.name(), c.laddr) for c in proc.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                continue
        assert any(addr.port == port for _, addr in listening), listening  # NATS is among them
        exposed = [(name, addr) for name, addr in listening if addr.ip not in ("127.0.0.1", "::1")]
        assert not exposed, f"listening beyond loopback: {exposed}"
        for secret_file in (state / "secrets.nk", state / "host.seed"):
            assert secret_file.stat().st_mode & 0o077 == 0, f"{secret_file} is readable by others"
        assert b"value-of-up" not in b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout:
            up.stdout.close()
