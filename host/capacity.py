"""What a host can offer: CPU, memory and load, read from the OS."""

from __future__ import annotations

import os

import psutil


def _memory() -> tuple[int, int]:
    """(total, available) bytes: the two lines of /proc/meminfo (psutil parses all of it, ~7x the
    time, at every heartbeat), or psutil where there is no /proc."""
    try:
        total = available = -1
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith(b"MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
        if total >= 0 and available >= 0:
            return total, available
    except (OSError, ValueError, IndexError):
        pass
    mem = psutil.virtual_memory()
    return int(mem.total), int(mem.available)


def read_capacity() -> dict[str, float | int]:
    total, available = _memory()
    try:
        l1, l5, l15 = os.getloadavg()
    except OSError:  # not available on every OS
        l1 = l5 = l15 = 0.0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return {
        "cpus": cpus,
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "load_1m": round(l1, 2),
        "load_5m": round(l5, 2),
        "load_15m": round(l15, 2),
    }
