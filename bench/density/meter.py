"""Memory as PSS and CPU from /proc, summed over every process of a system.

PSS (``/proc/PID/smaps_rollup``) shares each shared page among the processes
that map it, so summing it over processes counts every page once; RSS would
count a shared page once per process. A system is a list of root pids; their
children are found again at every reading (workers and providers count).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from ..http.load import _tree


def pss_kib(pid: int) -> dict[str, int]:
    """``Pss``, ``Pss_Anon``, ``Pss_File``, ``Rss`` of one process in KiB ({} when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Rss"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return {}
    return out


def processes(roots: list[int]) -> list[psutil.Process]:
    return _tree(roots)


def pss_by_process(roots: list[int]) -> list[dict[str, Any]]:
    """One row per process of the trees: pid, name (its role, from the command line), PSS in MiB."""
    rows = []
    for p in processes(roots):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        k = pss_kib(p.pid)
        if not k:
            continue
        rows.append({"pid": p.pid, "cmd": _role(cmd), "pss_mib": round(k.get("Pss", 0) / 1024, 1),
                     "pss_anon_mib": round(k.get("Pss_Anon", 0) / 1024, 1),
                     "pss_file_mib": round(k.get("Pss_File", 0) / 1024, 1),
                     "rss_mib": round(k.get("Rss", 0) / 1024, 1)})
    return sorted(rows, key=lambda r: -r["pss_mib"])


def _role(cmd: str) -> str:
    for key in ("trellis.host.workers", "nats-server", "wadm", "builtin", "providers.", "uvicorn", "host"):
        if key in cmd:
            i = cmd.find(key)
            return cmd[max(0, i - 20): i + 60].strip()
    return cmd[:100]


def pss_mib(roots: list[int]) -> float:
    return round(sum(pss_kib(p.pid).get("Pss", 0) for p in processes(roots)) / 1024, 1)


def cpu_s(roots: list[int]) -> dict[int, float]:
    out = {}
    for p in processes(roots):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system
    return out


@dataclass
class IdleWindow:
    """CPU used by the trees over a window with no traffic: % of one core, and per process."""

    roots: list[int]
    _t0: float = 0.0
    _cpu0: dict[int, float] = field(default_factory=dict)

    def __enter__(self) -> IdleWindow:
        self._cpu0 = cpu_s(self.roots)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        end = cpu_s(self.roots)
        self.used_s = {pid: max(0.0, c - self._cpu0.get(pid, 0.0)) for pid, c in end.items()}

    def by_process(self) -> list[dict[str, Any]]:
        """CPU % of one core per process of the trees (the busiest first)."""
        rows = []
        for p in processes(self.roots):
            used = self.used_s.get(p.pid)
            if used is None:
                continue
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            rows.append({"pid": p.pid, "cmd": _role(cmd), "cpu_pct": round(100.0 * used / max(self.wall_s, 1e-9), 3)})
        return sorted(rows, key=lambda r: -r["cpu_pct"])

    @property
    def cpu_pct(self) -> float:
        """CPU time over wall time, in % of one core."""
        return round(100.0 * sum(self.used_s.values()) / max(self.wall_s, 1e-9), 3)


class PeakPss:
    """The peak of each system's summed PSS, sampled every ``every_s`` in a thread."""

    def __init__(self, systems: dict[str, list[int]] | dict[str, Any], every_s: float = 1.0) -> None:
        self.systems = systems
        self.every_s = every_s
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _roots(self, v: Any) -> list[int]:
        return list(v.roots) if hasattr(v, "roots") else list(v)

    def _loop(self) -> None:
        while True:
            for name, v in self.systems.items():
                self.peak[name] = max(self.peak.get(name, 0.0), pss_mib(self._roots(v)))
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> PeakPss:
        self._thread = threading.Thread(target=self._loop, name="peak-pss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
