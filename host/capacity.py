"""What a host can offer: CPU, memory and load, read from the OS."""

from __future__ import annotations

import os

import psutil


def read_capacity() -> dict[str, float | int]:
    mem = psutil.virtual_memory()
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
        "memory_total_bytes": int(mem.total),
        "memory_available_bytes": int(mem.available),
        "load_1m": round(l1, 2),
        "load_5m": round(l5, 2),
        "load_15m": round(l15, 2),
    }
