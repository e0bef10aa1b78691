"""Starting the baselines as a container runtime would: one process per service, configured by its environment.

    async with start_platform_poc_services(nats_url, state_dir) as system:
        system.url      # the orders app's front (http-controller), as the Trellis app's http-server
        system.pids     # every process started (six)
    async with start_small_app_services(nats_url, state_dir, ["a", "b"]) as system:
        system.urls     # {"a": "http://127.0.0.1:PORT", ...}: one always-on service per app

Each service is ``python -P bench/baselines/.../app.py`` with its settings in environment
variables only (``PORT``, ``NATS_URL``, peers' ``*_URL``, ``DATA_DIR``, ...), its output in
``STATE_DIR/logs/NAME.log``, and the SQLite file under ``STATE_DIR/data``. A context
manager returns once every service answers HTTP (uvicorn opens its port only after the
service's start-up: NATS connected, buckets and database open), and on exit stops them all:
SIGTERM, a grace period, then SIGKILL, each reaped. The children also die with their parent
(``trellis.kit.procs``: the death signal and ``exit_with_parent``), so none outlives a killed
benchmark.

Names in NATS are the launcher's ``prefix`` (``platform-poc-baseline`` by default), not the
Trellis app's ``platform-poc``: both systems can share one NATS server in one sitting
without reading each other's products or handling each other's order notifications.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from trellis.kit import procs

ROOT = Path(__file__).resolve().parent
PLATFORM_POC_DIR = ROOT / "platform-poc-services"
SMALL_APP = ROOT / "small-app-service" / "app.py"
#: the six services, in the Trellis app's order; the first is the front
PLATFORM_POC_SERVICES = ("http-controller", "products-service", "inventory-service", "orders-service",
                         "notification-service", "data-init")
#: the variables the services read: never inherited from the caller's environment, only set here
SERVICE_VARS = ("HOST", "PORT", "NATS_URL", "DATA_DIR", "LOG_LEVEL", "PRODUCTS_BUCKET", "NOTIFICATION_SUBJECT",
                "PRODUCTS_URL", "INVENTORY_URL", "ORDERS_URL", "DATA_INIT_URL", "APP_NAME", "BUCKET", "HTTP_CLIENT")
#: the HTTP clients the services can call each other with (platform-poc-services/common/rpc.py)
HTTP_CLIENTS = ("aiohttp", "httpx")
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BaselineError(RuntimeError):
    """A service did not start (the message has the end of its log)."""


@dataclass
class Service:
    name: str
    url: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class System:
    """Services running: ``url`` is the front (or the first app), ``urls`` every service by name."""

    url: str
    urls: dict[str, str]
    pids: list[int]
    logs: dict[str, Path]
    #: the names in NATS: ``products_bucket``, ``notification_subject`` (platform-poc), ``bucket_prefix`` (small apps)
    settings: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list, repr=False)

    def log_text(self, name: str) -> str:
        """Everything service ``name`` logged so far."""
        return self.logs[name].read_text(errors="replace") if self.logs[name].exists() else ""

    def exited(self) -> list[str]:
        """The services that are no longer running."""
        return [s.name for s in self.services if s.proc.poll() is not None]

    async def wait_exit(self) -> Service:
        """Until one of the services exits (by its pidfd: no polling); returns it."""
        for s in self.services:
            if s.proc.poll() is not None:  # already gone (and reaped: it has no pidfd any more)
                return s
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Service] = loop.create_future()
        fds: list[int] = []
        try:
            def on_exit(s: Service) -> None:
                if not done.done():
                    done.set_result(s)

            for s in self.services:
                fd = os.pidfd_open(s.proc.pid)
                fds.append(fd)
                loop.add_reader(fd, on_exit, s)
            exited = await done
            exited.proc.poll()  # reaped: its returncode is known
            return exited
        finally:
            for fd in fds:
                loop.remove_reader(fd)
                os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(name: str, script: Path, env: dict[str, str], logs: Path) -> Service:
    inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    log = logs / f"{name}.log"
    proc = procs.spawn([sys.executable, "-P", str(script)], log=log, env={**inherited, **env})
    return Service(name, f"http://127.0.0.1:{env['PORT']}", env, log, proc)


async def _wait_ready(services: list[Service], timeout_s: float) -> None:
    """Until each service answers HTTP (any status: the front has no health route); fails fast on an exit."""
    deadline = time.monotonic() + timeout_s

    async def one(client: httpx.AsyncClient, s: Service) -> None:
        while True:
            code = s.proc.poll()
            if code is not None:
                raise BaselineError(f"{s.name} exited with {code} before it answered; its log:\n{s.log_tail()}")
            try:
                await client.get(s.url + "/healthz")
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BaselineError(f"{s.name} did not answer at {s.url} within {timeout_s:.0f}s; "
                                    f"its log:\n{s.log_tail()}")
            await asyncio.sleep(0.05)  # a port that is not open yet has no event to wait on

    async with httpx.AsyncClient(timeout=5.0) as client:
        await asyncio.gather(*(one(client, s) for s in services))


def _stop_all(services: list[Service], grace_s: float) -> None:
    """SIGTERM to every service at once, wait up to ``grace_s`` in all, SIGKILL the rest; reap each."""
    for s in services:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for s in services:
        try:
            s.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


@asynccontextmanager
async def _running(specs: list[tuple[str, Path, dict[str, str]]], logs: Path, ready_timeout_s: float,
                   stop_grace_s: float) -> AsyncIterator[list[Service]]:
    logs.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    try:
        # spawned on this thread: the death signal follows the thread that forks (trellis.kit.procs)
        for name, script, env in specs:
            services.append(_spawn(name, script, env, logs))
        await _wait_ready(services, ready_timeout_s)
        yield services
    finally:
        try:
            await asyncio.to_thread(_stop_all, services, stop_grace_s)
        except asyncio.CancelledError:  # still stop them all, on this thread
            _stop_all(services, stop_grace_s)
            raise


def _check_name(what: str, value: str) -> None:
    if not NAME.match(value):
        raise ValueError(f"{what} {value!r}: use 1-64 letters, digits, '-' and '_'")


@asynccontextmanager
async def start_platform_poc_services(
    nats_url: str, state_dir: Path, *, port: int | None = None, prefix: str = "platform-poc-baseline",
    log_level: str = "info", http_client: str = "aiohttp", ready_timeout_s: float = READY_TIMEOUT_S,
    stop_grace_s: float = STOP_GRACE_S,
) -> AsyncIterator[System]:
    """The orders app (examples/platform-poc) as six always-on services; ``System.url`` is its HTTP API.

    ``port`` fixes the front's port (default: a free one; the others always get free ones).
    ``prefix`` names what they use in NATS: bucket ``PREFIX-products``, subject
    ``PREFIX.order-notification``. ``log_level`` is the services' (``warning`` drops the
    per-order lines, as ``TRELLIS_LOG_LEVEL=WARNING`` does for Trellis's components).
    ``http_client`` is what the services call each other with: ``aiohttp`` (default) or
    ``httpx``: the same answers, but with httpx the app spends ~3x the CPU per order
    (platform-poc-services/common/rpc.py says why).
    """
    _check_name("prefix", prefix)
    if http_client not in HTTP_CLIENTS:
        raise ValueError(f"http_client {http_client!r}: use {' or '.join(HTTP_CLIENTS)}")
    if importlib.util.find_spec(http_client) is None:
        raise ValueError(f"http_client {http_client!r}: the {http_client} package is not installed "
                         "(pip install -e '.[bench]')")
    state_dir = Path(state_dir)
    ports = {name: free_port() for name in PLATFORM_POC_SERVICES}
    if port is not None:
        ports["http-controller"] = port
    urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
    bucket, subject = f"{prefix}-products", f"{prefix}.order-notification"
    data = str(state_dir / "data")
    envs: dict[str, dict[str, str]] = {
        "http-controller": {"PRODUCTS_URL": urls["products-service"], "INVENTORY_URL": urls["inventory-service"],
                            "ORDERS_URL": urls["orders-service"], "DATA_INIT_URL": urls["data-init"],
                            "HTTP_CLIENT": http_client},
        "products-service": {"NATS_URL": nats_url, "PRODUCTS_BUCKET": bucket},
        "inventory-service": {"DATA_DIR": data},
        "orders-service": {"DATA_DIR": data, "NATS_URL": nats_url, "INVENTORY_URL": urls["inventory-service"],
                           "NOTIFICATION_SUBJECT": subject, "HTTP_CLIENT": http_client},
        "notification-service": {"NATS_URL": nats_url, "NOTIFICATION_SUBJECT": subject},
        "data-init": {"DATA_DIR": data, "NATS_URL": nats_url, "PRODUCTS_BUCKET": bucket},
    }
    specs = [(name, PLATFORM_POC_DIR / name / "app.py",
              {"PORT": str(ports[name]), "LOG_LEVEL": log_level, **envs[name]}) for name in PLATFORM_POC_SERVICES]
    async with _running(specs, state_dir / "logs", ready_timeout_s, stop_grace_s) as services:
        yield System(url=urls["http-controller"], urls=urls, pids=[s.proc.pid for s in services],
                     logs={s.name: s.log for s in services},
                     settings={"products_bucket": bucket, "notification_subject": subject,
                               "http_client": http_client},
                     services=services)


@asynccontextmanager
async def start_small_app_services(
    nats_url: str, state_dir: Path, names: list[str], *, bucket_prefix: str = "baseline-small-app-",
    log_level: str = "warning", ready_timeout_s: float | None = None, stop_grace_s: float = STOP_GRACE_S,
) -> AsyncIterator[System]:
    """One always-on small-app service per name, each on its own port with its own bucket
    ``BUCKET_PREFIX + name``; ``System.urls`` by name, ``System.url`` the first's."""
    if not names:
        raise ValueError("names: give at least one app name")
    if len(set(names)) != len(names):
        raise ValueError(f"names: {sorted({n for n in names if names.count(n) > 1})} given more than once")
    for name in names:
        _check_name("app name", name)
        _check_name("bucket", bucket_prefix + name)
    specs = [(name, SMALL_APP, {"PORT": str(free_port()), "NATS_URL": nats_url, "APP_NAME": name,
                                "BUCKET": bucket_prefix + name, "LOG_LEVEL": log_level}) for name in names]
    timeout = ready_timeout_s if ready_timeout_s is not None else READY_TIMEOUT_S + 2.0 * len(names)
    async with _running(specs, Path(state_dir) / "logs", timeout, stop_grace_s) as services:
        urls = {s.name: s.url for s in services}
        yield System(url=urls[names[0]], urls=urls, pids=[s.proc.pid for s in services],
                     logs={s.name: s.log for s in services}, settings={"bucket_prefix": bucket_prefix},
                     services=services)
