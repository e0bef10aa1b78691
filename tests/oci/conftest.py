"""A real OCI registry (Debian's docker-registry) on loopback, plain HTTP, optionally with basic auth."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.components.build import build_wat

from .token_server import ISSUER, SERVICE, TokenServer

REGISTRY_BIN = shutil.which("docker-registry")
USER, PASSWORD = "deployer", "s3cret-for-tests"


@dataclass
class Registry:
    address: str  # host:port
    proc: subprocess.Popen[bytes]
    auth: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, auth: bool, token: TokenServer | None = None) -> Registry:
    if REGISTRY_BIN is None:
        pytest.skip("needs Debian's docker-registry (apt-get install docker-registry; .ci/run installs it)")
    port = _free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}'}}",
    ]
    if auth:
        import bcrypt

        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5))
        (root / "htpasswd").write_bytes(USER.encode() + b":" + hashed + b"\n")
        config.append(f"auth: {{htpasswd: {{realm: trellis-test, path: {root / 'htpasswd'}}}}}")
    if token is not None:
        config.append(f"auth: {{token: {{realm: '{token.realm}', service: {SERVICE}, issuer: {ISSUER}, "
                      f"rootcertbundle: {token.bundle}}}}}")
    (root / "config.yml").write_text("\n".join(config) + "\n")
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=log)
    reg = Registry(f"127.0.0.1:{port}", proc, auth)
    deadline = time.monotonic() + 30
    while True:  # the registry answers /v2/ (200, or 401 with auth) once it serves
        try:
            if httpx.get(f"http://{reg.address}/v2/", timeout=1).status_code in (200, 401):
                return reg
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.05)


def _stop(reg: Registry) -> None:
    reg.proc.terminate()
    try:
        reg.proc.wait(10)
    except subprocess.TimeoutExpired:
        reg.proc.kill()
        reg.proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = _start(tmp_path / "registry", auth=False)
    yield reg
    _stop(reg)


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = _start(tmp_path / "auth-registry", auth=True)
    yield reg
    _stop(reg)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    """A registry with docker's token auth: the token service takes USER/PASSWORD."""
    root = tmp_path / "token-registry"
    root.mkdir()
    with TokenServer(root, USER, PASSWORD) as tokens:
        reg = _start(root, auth=False, token=tokens)
        yield reg, tokens
        _stop(reg)


@pytest.fixture(scope="session")
def adder() -> Path:
    return build_wat("adder")


from tests.wadm_e2e.conftest import controllers  # noqa: E402,F401 (a fixture for the manifest test)
