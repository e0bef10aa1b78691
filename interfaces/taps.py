"""Taps: what a watcher asks the workers for, and what they send back (JSON on the wire).

A worker publishes nothing about single calls unless someone watches. A watcher
(`trellis spy`, the dashboard) publishes a :class:`TapWant` on ``subjects.tap_want``
every few seconds with a time to live; every worker keeps the wish until it lapses,
so a watcher that dies stops the flow within ``ttl_s``. While a wish is live:

* ``spy``: every invocation into the component (``direction: in``) and every call it
  makes through its imports (``direction: out``) is published as a :class:`SpyRecord`
  on ``subjects.tap_spy(lattice, component_id)``, arguments and result abbreviated;
* ``traffic``: each worker publishes, every second it served calls, a
  :class:`TrafficReport` (per component: calls, errors, a latency histogram) on
  ``subjects.tap_traffic(lattice, host_id)``.

Pure types and functions, no I/O.
"""

from __future__ import annotations

import bisect
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: how long a wish lives unless renewed, and how often watchers renew it
DEFAULT_TTL_S = 6.0
RENEW_EVERY_S = 2.0
MAX_TTL_S = 60.0
#: abbreviated arguments and results are at most this long
ABBREV_CHARS = 160
#: upper bounds of the latency histogram's buckets, milliseconds (the last bucket is unbounded)
LATENCY_BOUNDS_MS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
                                        10000, 30000)


class TapWant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    #: spy on this component's calls (None: no spying asked)
    spy: str | None = None
    #: send per-component traffic summaries
    traffic: bool = False
    ttl_s: float = Field(DEFAULT_TTL_S, ge=0, le=MAX_TTL_S, description="0 withdraws the wish")


class SpyRecord(BaseModel):
    """One call into (``in``) or out of (``out``) the spied component."""

    model_config = ConfigDict(extra="ignore")

    time: str = Field(description="when the call started (ISO 8601, UTC)")
    direction: str = Field(description="in: a call the component served; out: a call it made")
    component: str
    app: str = ""
    #: in: who called (component, provider or client); out: the component itself
    caller: str
    #: in: the component itself; out: the component or provider called
    target: str
    function: str
    args: str = Field(description="the arguments, abbreviated")
    result: str = Field("", description="the result (outcome ok) or the error message, abbreviated")
    outcome: str = Field(description="ok or error")
    error_kind: str | None = None
    duration_ms: float
    host: str
    worker: int
    via: str = Field("", description="rpc, colocated or handoff (in); lattice or local (out)")
    cold: bool | None = None
    invocation_id: str = ""


class ComponentTraffic(BaseModel):
    model_config = ConfigDict(extra="ignore")

    app: str = ""
    calls: int = 0
    errors: int = 0
    #: counts per bucket of LATENCY_BOUNDS_MS (one more than the bounds: the unbounded last bucket)
    latency: list[int] = Field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, wall_ms: float, ok: bool) -> None:
        self.calls += 1
        if not ok:
            self.errors += 1
        self.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, wall_ms)] += 1

    def merge(self, other: ComponentTraffic) -> None:
        self.calls += other.calls
        self.errors += other.errors
        for i, n in enumerate(other.latency[:len(self.latency)]):
            self.latency[i] += n


class TrafficReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    host: str
    worker: int
    #: the seconds this report covers
    interval_s: float
    components: dict[str, ComponentTraffic]


def percentile_ms(latency: list[int], q: float) -> float | None:
    """The ``q`` (0..1) quantile of a histogram, interpolated inside its bucket; None when empty."""
    total = sum(latency)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(latency):
        if n and seen + n >= rank:
            lo = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
            hi = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1] * 2
            return lo + (hi - lo) * ((rank - seen) / n)
        seen += n
    return LATENCY_BOUNDS_MS[-1]


def abbreviate(value: Any, limit: int = ABBREV_CHARS) -> str:
    """A value as short JSON-ish text: bytes as their length, long strings and lists cut."""
    text = json.dumps(_shorten(value, limit), separators=(",", ":"), default=_text, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _shorten(value: Any, limit: int, depth: int = 0) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value[:limit + 4]), len(value), limit)
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if depth > 8:
        return "…"
    if isinstance(value, (list, tuple)):
        items = [_shorten(v, limit, depth + 1) for v in value[:16]]
        return items + [f"… {len(value) - 16} more"] if len(value) > 16 else items
    if isinstance(value, dict):
        out = {str(k): _shorten(v, limit, depth + 1) for k, v in list(value.items())[:16]}
        if len(value) > 16:
            out["…"] = f"{len(value) - 16} more"
        return out
    return value


def _bytes(head: bytes, size: int, limit: int) -> str:
    """Bytes that read as text show as that text, others as their length."""
    text: str | None
    try:
        text = head.decode()
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode() if size > len(head) else None  # a character cut at the end
        except UnicodeDecodeError:
            text = None
    if text is None or not text.isprintable() and not all(c.isprintable() or c in "\n\r\t" for c in text):
        return f"<{size} bytes>"
    return text[:limit] + ("…" if size > len(text[:limit].encode()) else "")


def _text(value: Any) -> str:
    return f"<{type(value).__name__}>" if not isinstance(value, (int, float, bool)) else str(value)
