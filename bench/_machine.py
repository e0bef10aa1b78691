"""What machine a run was on, and where CPU time went while it ran."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import psutil


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _nats_server_version() -> str:
    try:
        from trellis.natsserver import find_binary

        out = subprocess.run([find_binary(), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except Exception as exc:  # informational only
        return f"? ({exc.__class__.__name__})"


def _git() -> dict[str, object]:
    """The commit measured, and whether the platform's code differed from it."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--", "host", "interfaces", "trellis")
        return {"commit": git("rev-parse", "--short", "HEAD"), "platform_dirty": bool(dirty)}
    except Exception:
        return {}


def machine_info() -> dict[str, object]:
    """Cores, memory, CPU model, versions and current load, for every result file."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wasmtime_py": _pkg("wasmtime"),
        "nats_py": _pkg("nats-py"),
        "nats_server": _nats_server_version(),
        "uvloop": _pkg("uvloop"),
        "componentize_py": _pkg("componentize-py"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git": _git(),
    }


def _proc_cpu_s(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def _busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


@dataclass
class CpuMeter:
    """CPU seconds used by named processes over a window, and by everything else.

    ``roles`` maps a role (``client``, ``nats-server``, ``worker-0``…) to a pid.
    ``other`` is the machine's busy time not spent in those processes: other
    people's work on a shared machine, which makes a run noisier.
    """

    roles: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _busy0: float = 0.0
    _t0: float = 0.0

    def __enter__(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._busy0 = _busy_s()
        self._start = {r: c for r, pid in self.roles.items() if (c := _proc_cpu_s(pid)) is not None}
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        busy = _busy_s() - self._busy0
        self.used_s: dict[str, float] = {}
        for role, pid in self.roles.items():
            end = _proc_cpu_s(pid)
            if end is not None and role in self._start:
                self.used_s[role] = end - self._start[role]
        self.other_s = max(0.0, busy - sum(self.used_s.values()))

    def report(self, calls: int) -> dict[str, object]:
        return cpu_report(self.used_s, self.other_s, self.wall_s, calls)


def cpu_report(used_s: dict[str, float], other_s: float, wall_s: float, calls: int) -> dict[str, object]:
    """Cores used per role (and by everything else), CPU µs per call per role."""
    calls = max(1, calls)
    wall_s = max(wall_s, 1e-9)
    return {
        "cores_used": {r: round(s / wall_s, 2) for r, s in used_s.items()} | {"other": round(other_s / wall_s, 2)},
        "cpu_us_per_call": {r: round(s / calls * 1e6, 1) for r, s in used_s.items()},
        "cpu_us_per_call_total": round(sum(used_s.values()) / calls * 1e6, 1),
    }
