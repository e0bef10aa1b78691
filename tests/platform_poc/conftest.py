"""The orders application deployed from its manifests on a real `trellis up`, once per backend.

* ``nats-sqlite``: ``wadm.yaml`` (NATS JetStream key-value + SQLite), started the way
  the README says: ``trellis up --deploy FOLDER`` builds a copy of the example and
  deploys its ``wadm.yaml``.
* ``redis-postgres``: ``wadm-redis-postgres.yaml`` on a redis-server and a PostgreSQL
  of the test's own (Debian's packages), deployed with ``trellis app deploy --wait``.
* ``baseline-services``: not Trellis but its baseline, the same app as six always-on
  services (bench/baselines/platform-poc-services) on the session's nats-server: the
  route tests hold it to the same answers as the Trellis app. ``-httpx``: the same
  services calling each other with httpx instead of aiohttp.

Each backend's lattice serves every test of a module (deploying compiles six
components), so tests never assume an empty database: they make their own
orders and products and look for them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.baselines.services import System, start_platform_poc_services
from tests.builtin_providers.backends import PostgresServer, RedisServer
from tests.components.build import default_cache_dir
from trellis.build import BuildOptions, build_all

from .lattice import (
    COMPONENTS,
    EXAMPLE,
    TrellisUp,
    copy_example,
    free_port,
    render_manifest,
    wait_http,
)

BACKENDS = ("nats-sqlite", "redis-postgres", "baseline-services", "baseline-services-httpx")
#: the Trellis app's subject (the baseline's is its own: see start_platform_poc_services)
NOTIFICATIONS = "platform-poc.order-notification"
BUILD_CACHE = default_cache_dir() / "trellis-build"


@pytest.fixture(scope="session")
def poc_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trellis build examples/platform-poc`` into a folder of the session's (cached across sessions)."""
    out = tmp_path_factory.mktemp("platform-poc-build")
    results = build_all(EXAMPLE, out, BuildOptions(cache_dir=BUILD_CACHE))
    assert sorted(r.app.name for r in results) == sorted(COMPONENTS)
    return out


@dataclass
class Deployed:
    """The application as a client sees it."""

    backend: str
    base_url: str
    nats_url: str
    #: where orders are announced
    notification_subject: str
    #: the Trellis deployment (None for the baseline)
    up: TrellisUp | None = None
    #: the baseline's services (None for Trellis)
    services: System | None = None

    def component_logs(self) -> str:
        """What the components (Trellis's worker processes) or the baseline's services logged."""
        if self.up is not None:
            return self.up.component_logs()
        assert self.services is not None
        return "\n".join(self.services.log_text(name) for name in self.services.logs)

    def request(self, method: str, path: str, body: Any = None, *, content: bytes | str | None = None,
                params: dict[str, str] | None = None, timeout: float = 30.0) -> httpx.Response:
        return httpx.request(method, self.base_url + path, json=body, content=content, params=params,
                             timeout=timeout)

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, content: bytes | str | None = None) -> httpx.Response:
        return self.request("POST", path, body, content=content)


def _password_file(root: Path) -> Path:
    path = root / "db-password"
    path.write_text("not-in-the-manifest")
    return path


def _baseline(request: pytest.FixtureRequest, root: Path, backend: str) -> Iterator[Deployed]:
    """The baseline's six services on the session's nats-server, with names in NATS of their own."""
    nats_url: str = request.getfixturevalue("nats_server").url
    loop = asyncio.new_event_loop()
    started = start_platform_poc_services(nats_url, root, prefix=f"poc-{uuid.uuid4().hex[:8]}",
                                          http_client="httpx" if backend.endswith("-httpx") else "aiohttp")
    try:
        system = loop.run_until_complete(started.__aenter__())
        try:
            deployed = Deployed(backend, system.url, nats_url, system.settings["notification_subject"],
                                services=system)
            seeded = deployed.get("/data-init/all")
            assert seeded.status_code == 200, f"{seeded.status_code} {seeded.text}\n{deployed.component_logs()}"
            yield deployed
        finally:
            loop.run_until_complete(started.__aexit__(None, None, None))
    finally:
        loop.close()


@pytest.fixture(scope="module", params=BACKENDS)
def poc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    backend: str = request.param
    if backend.startswith("baseline-services"):
        yield from _baseline(request, tmp_path_factory.mktemp("poc-baseline"), backend)
        return
    # only Trellis needs the components built
    poc_wasm: Path = request.getfixturevalue("poc_wasm")
    root = tmp_path_factory.mktemp(f"poc-{backend}")
    http_port = free_port()
    servers: list[Any] = []
    up: TrellisUp | None = None
    try:
        if backend == "nats-sqlite":
            example = copy_example(root / "platform-poc")
            render_manifest(example / "wadm.yaml", example / "wadm.yaml", wasm_dir=None, http_port=http_port,
                            provider_config={"sqldb": {"path": str(root / "platform-poc.db")}})
            # poc_wasm has filled the build cache, so the build `trellis up` runs only copies from it
            up = TrellisUp(root, deploy=example, env={"TRELLIS_BUILD_CACHE": str(BUILD_CACHE)})
            up.wait_deployed()
        else:
            redis = RedisServer()
            servers.append(redis)
            postgres = PostgresServer()
            servers.append(postgres)
            db_url = postgres.create_database("platform_poc")
            manifest = render_manifest(EXAMPLE / "wadm-redis-postgres.yaml", root / "wadm.yaml",
                                       wasm_dir=poc_wasm, http_port=http_port,
                                       provider_config={"keyvalue": {"url": redis.url}, "sqldb": {"url": db_url}})
            up = TrellisUp(root)
            up.wait_ready()
            # the manifest grants the SQL provider this secret as its password (trust auth ignores it)
            put = up.cli("secret", "put", "platform-poc-db-password", "--from-file", str(_password_file(root)))
            assert put.returncode == 0, put.stderr
            up.deploy(manifest)
        deployed = Deployed(backend, f"http://127.0.0.1:{http_port}", up.nats_url, NOTIFICATIONS, up=up)
        wait_http(deployed.base_url)
        seeded = deployed.get("/data-init/all")
        assert seeded.status_code == 200, f"{seeded.status_code} {seeded.text}\n{up.logs()}"
        yield deployed
    finally:
        if up is not None:
            up.stop()
        for server in reversed(servers):
            server.stop()
