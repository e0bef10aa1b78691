"""The always-on baselines, as the density benchmark drives them (``bench/baselines/services.py``).

``start_small_app_services`` runs N copies of the small app as always-on
services; ``start_platform_poc_services`` the orders app as six services. Both
are engineer i16-baseline's; this module only adapts what they return to what
the benchmark needs (root pids, where to send requests, stop). When the module
is not there yet, the baseline is reported as not run, with the reason.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


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


class Baseline:
    """What a baseline launcher returned: its processes and how to reach it."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @property
    def roots(self) -> list[int]:
        h = self.handle
        for attr in ("roots", "pids"):
            if hasattr(h, attr):
                v = getattr(h, attr)
                return list(v() if callable(v) else v)
        procs = getattr(h, "procs", None) or getattr(h, "processes", None) or []
        return [p.pid for p in procs if p.poll() is None]

    def stop(self) -> None:
        for attr in ("stop", "close", "terminate"):
            if hasattr(self.handle, attr):
                getattr(self.handle, attr)()
                return


def start_small_apps(n: int, nats_url: str, state_dir: Path) -> Any:
    return _services().start_small_app_services(n, nats_url, state_dir)


def start_platform_poc(nats_url: str, state_dir: Path) -> Any:
    return _services().start_platform_poc_services(nats_url, state_dir)


def small_app_get(handle: Any, k: int) -> tuple[int, bytes]:
    """``GET /`` of copy ``k`` of the always-on small app."""
    raise NotImplementedError("adapted once bench/baselines/services.py lands")


class PlatformPocSystem:
    """The six always-on services as a ``bench.http`` system (placeholder until they land)."""

    def __init__(self, workdir: Path, nats_url: str) -> None:
        raise NotImplementedError("adapted once bench/baselines/services.py lands")
