"""Per-component usage in one worker: an observer of invocation records that adds them up.

The tally is cumulative from the worker's start (counters; a reader takes
differences). The host asks its workers for it (the ``usage`` worker op) and
adds the workers up; the lattice's figures per app are the hosts' added up
(``trellis app usage``). Memory-seconds are each call's instance memory
(``probe.py``) times its wall time: what holding that memory for the call cost.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .records import InvocationRecord


@dataclass
class ComponentUsage:
    app: str = ""
    invocations: int = 0
    errors: int = 0
    cold_starts: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    #: sum over calls of instance memory (bytes) x wall time (s)
    memory_byte_s: float = 0.0
    #: the largest instance memory seen, bytes
    peak_memory_bytes: int = 0
    fuel: int = 0
    #: calls by how they came in (records.VIA_*), and how many ran on the event loop
    via: dict[str, int] = field(default_factory=dict)
    inline: int = 0

    def add(self, r: InvocationRecord) -> None:
        self.app = r.app
        self.invocations += 1
        if r.outcome != "ok":
            self.errors += 1
        if r.cold:
            self.cold_starts += 1
        self.cpu_s += r.cpu_s
        self.wall_s += r.wall_s
        self.memory_byte_s += r.memory_bytes * r.wall_s
        if r.memory_bytes > self.peak_memory_bytes:
            self.peak_memory_bytes = r.memory_bytes
        if r.fuel:
            self.fuel += r.fuel
        self.via[r.via] = self.via.get(r.via, 0) + 1
        if r.inline:
            self.inline += 1


class UsageTally:
    """Observer: adds every record to its component's :class:`ComponentUsage` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.components: dict[str, ComponentUsage] = {}

    def __call__(self, record: InvocationRecord) -> None:
        with self._lock:
            usage = self.components.get(record.component)
            if usage is None:
                usage = self.components[record.component] = ComponentUsage()
            usage.add(record)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {cid: {**asdict(u), "via": dict(u.via)} for cid, u in self.components.items()}
