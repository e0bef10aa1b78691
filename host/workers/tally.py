"""What a worker's calls cost, added up: an observer of invocation records (``records.py``).

Per component: invocations, errors, cold starts, CPU, wall time, memory-seconds (each
call's instance memory times its wall time), peak instance memory, fuel, and how calls
came in — the per-app usage figures (``trellis app usage``). Per component and function:
calls by outcome, errors by kind and a latency histogram — the invocation metrics. All
cumulative since the worker started; the host asks its workers (``usage`` and
``metrics`` worker ops) and adds them up.

One lock and a few additions per call: OpenTelemetry's own ``add``/``record`` would cost
several times more (``trellis/kit/meters.py``); the tallies become OpenTelemetry
metrics only when something collects them.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from trellis.interfaces.telemetry import FastHistogram

from .records import InvocationRecord

#: distinct functions per component kept apart; calls to more are counted under OTHER
MAX_FUNCTIONS = 64
OTHER = "(other)"
#: error kinds that mean the function may not exist: not used as a label value
_UNKNOWN_FUNCTION = frozenset({"no_such_function", "not_found", "bad_request"})


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


class FunctionStats:
    __slots__ = ("ok", "errors", "latency")

    def __init__(self) -> None:
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.latency = FastHistogram()


class CallTally:
    """Observer: adds every record up per component and per function (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.components: dict[str, ComponentUsage] = {}
        self.functions: dict[tuple[str, str], FunctionStats] = {}
        self._per_component: dict[str, int] = {}

    def __call__(self, r: InvocationRecord) -> None:
        with self._lock:
            usage = self.components.get(r.component)
            if usage is None:
                usage = self.components[r.component] = ComponentUsage()
            usage.add(r)
            key = (r.component, r.function)
            stats = self.functions.get(key)
            if stats is None:
                stats = self._new_function(r)
            stats.latency.record(r.wall_s)
            if r.outcome == "ok":
                stats.ok += 1
            else:
                kind = r.error_kind or "internal"
                stats.errors[kind] = stats.errors.get(kind, 0) + 1

    def _new_function(self, r: InvocationRecord) -> FunctionStats:
        """A new (component, function) key; a function name from a failed call (it may not exist)
        or past MAX_FUNCTIONS is counted under OTHER, so label values stay bounded."""
        function = r.function
        n = self._per_component.get(r.component, 0)
        if (r.outcome != "ok" and r.error_kind in _UNKNOWN_FUNCTION) or n >= MAX_FUNCTIONS:
            function = OTHER
        key = (r.component, function)
        stats = self.functions.get(key)
        if stats is None:
            stats = self.functions[key] = FunctionStats()
            self._per_component[r.component] = n + 1
        return stats

    def usage(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {cid: {**asdict(u), "via": dict(u.via)} for cid, u in self.components.items()}

    def function_stats(self) -> list[tuple[str, str, str, int, dict[str, int], dict[str, Any]]]:
        """(component, app, function, ok, errors by kind, latency histogram) for each key."""
        with self._lock:
            return [(cid, self.components[cid].app if cid in self.components else "", fn, s.ok, dict(s.errors),
                     s.latency.plain()) for (cid, fn), s in self.functions.items()]
