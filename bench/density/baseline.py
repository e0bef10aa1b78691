"""The always-on baselines, as the density benchmark drives them (``bench/baselines/services.py``).

``start_small_app_services`` runs N copies of the small app as always-on
services; ``start_platform_poc_services`` the orders app as six services. Both
are engineer i16-baseline's; this module only adapts what they return to what
the benchmark needs (root pids, where to send requests, stop). When the module
is not there yet, the baseline is reported as not run, with the reason.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from ..http.peers import System


def _services() -> Any:
    return importlib.import_module("bench.baselines.services")


def missing() -> str:
    """Why the baselines cannot run here ('' when they can)."""
    try:
        mod = _services()
    except ImportError as exc:
        return f"bench/baselines/services.py is not on main yet ({exc})"
    for name in ("start_small_app_services", "start_platform_poc_services"):
        if not hasattr(mod, name):
            return f"bench/baselines/services.py has no {name}"
    return ""


class Running:
    """An async context manager of bench/baselines/services.py held open on its own event loop thread."""

    def __init__(self, cm: Any, nats_pid: int | None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="baseline-loop", daemon=True)
        self._thread.start()
        self._cm = cm
        self.nats_pid = nats_pid
        self.system: Any = asyncio.run_coroutine_threadsafe(cm.__aenter__(), self._loop).result(timeout=300)

    @property
    def roots(self) -> list[int]:
        """The services' processes, and the NATS server they use (as a Trellis lattice counts its own)."""
        alive = [p for p in self.system.pids if psutil.pid_exists(p)]
        return alive + ([self.nats_pid] if self.nats_pid else [])

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._cm.__aexit__(None, None, None), self._loop).result(timeout=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def start_small_apps(names: list[str], nats_url: str, state_dir: Path, nats_pid: int | None) -> Running:
    """One always-on small-app service per name (``start_small_app_services``)."""
    return Running(_services().start_small_app_services(nats_url, state_dir, names), nats_pid)


def small_app_get(running: Running, name: str) -> tuple[int, bytes]:
    """``GET /`` of the always-on copy ``name``."""
    url = urlsplit(running.system.urls[name])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class PlatformPocSystem(System):
    """The orders app as six always-on services (``start_platform_poc_services``), as a bench.http system."""

    name = "baseline-six-services"
    family = "baseline"
    full_app = True

    def __init__(self, workdir: Path, nats_url: str, nats_pid: int | None) -> None:
        super().__init__(workdir)
        self.nats_url = nats_url
        self.nats_pid = nats_pid
        self.running: Running | None = None
        self.info = {"mode": "always on: six Starlette services under uvicorn, calling each other over HTTP",
                     "processes": "6 services + nats-server"}

    @property
    def roots(self) -> list[int]:
        return self.running.roots if self.running is not None else []

    def _start(self) -> None:
        self.running = Running(_services().start_platform_poc_services(
            self.nats_url, self.workdir / "state", port=self.port), self.nats_pid)
        deadline = time.monotonic() + 120
        while True:  # the products, as the Trellis app gets them (GET /data-init/all)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/data-init/all")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the baseline's GET /data-init/all never answered 200")
            time.sleep(0.5)
        self.wait_ready(120)

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None
