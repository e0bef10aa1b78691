"""Metrics as plain data, so a process can hand its metrics to another (a worker to its host).

A *series list* is JSON: ``[{"name", "unit", "description", "kind", "points"}]`` where
``kind`` is ``counter`` (monotonic sum), ``updown`` (non-monotonic sum), ``gauge`` or
``histogram``, and each point is ``[attributes, value]``; a histogram's value is
``{"count", "sum", "bounds", "buckets"}`` (``buckets`` has one more entry than ``bounds``,
the last for values above them all). Names and units follow OpenTelemetry
(``trellis.invocation.duration``, ``s``); the Prometheus exporter turns them into
``trellis_invocation_duration_seconds``.

:func:`merge` adds series lists up (the same name and attributes: values summed,
histograms bucket by bucket), :func:`to_otel` makes OpenTelemetry ``Metric`` objects of one
for the SDK's exporters, and :func:`from_otel` reads what an SDK reader collected.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)

__all__ = ["LATENCY_BOUNDS_S", "FastHistogram", "from_otel", "merge", "series", "to_otel"]

Series = dict[str, Any]

#: bucket bounds of latency histograms, seconds (the SDK view of every ``*.duration`` uses them too)
LATENCY_BOUNDS_S: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1.0, 2.5, 5.0, 10.0, 30.0)

_START_NS = time.time_ns()


class FastHistogram:
    """A histogram cheap enough for every call (a bisect and three additions; no locking: the
    caller holds its own lock). OpenTelemetry's ``Histogram.record`` costs ~10 µs a call here."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def record(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def plain(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "bounds": list(self.bounds), "buckets": list(self.buckets)}


def series(name: str, kind: str, points: list[list[Any]], unit: str = "", description: str = "") -> Series:
    return {"name": name, "unit": unit, "description": description, "kind": kind, "points": points}


def merge(lists: Iterable[list[Series]]) -> list[Series]:
    """Add series lists up: points with the same name and attributes are summed."""
    out: dict[str, Series] = {}
    values: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for one in lists:
        for s in one:
            name = s["name"]
            if name not in out:
                out[name] = {**s, "points": []}
                values[name] = {}
            into = values[name]
            for attrs, value in s["points"]:
                key = tuple(sorted(attrs.items()))
                have = into.get(key)
                if have is None:
                    into[key] = dict(value, buckets=list(value["buckets"])) if isinstance(value, dict) else value
                elif isinstance(value, dict):
                    if list(have["bounds"]) != list(value["bounds"]):
                        continue  # cannot add histograms of other buckets
                    have["count"] += value["count"]
                    have["sum"] += value["sum"]
                    have["buckets"] = [a + b for a, b in zip(have["buckets"], value["buckets"], strict=False)]
                else:
                    into[key] = have + value
    for name, s in out.items():
        s["points"] = [[dict(key), value] for key, value in values[name].items()]
    return list(out.values())


def to_otel(series_list: list[Series]) -> list[Metric]:
    """The series as OpenTelemetry metrics (cumulative since this process started)."""
    now = time.time_ns()
    metrics = []
    for s in series_list:
        kind = s["kind"]
        if kind == "histogram":
            data: Any = Histogram(
                data_points=[HistogramDataPoint(
                    attributes=attrs, start_time_unix_nano=_START_NS, time_unix_nano=now, count=v["count"],
                    sum=v["sum"], bucket_counts=list(v["buckets"]), explicit_bounds=list(v["bounds"]),
                    min=float("nan"), max=float("nan")) for attrs, v in s["points"]],
                aggregation_temporality=AggregationTemporality.CUMULATIVE)
        elif kind == "gauge":
            data = Gauge(data_points=[NumberDataPoint(attributes=attrs, start_time_unix_nano=0,
                                                      time_unix_nano=now, value=v) for attrs, v in s["points"]])
        else:
            data = Sum(data_points=[NumberDataPoint(attributes=attrs, start_time_unix_nano=_START_NS,
                                                    time_unix_nano=now, value=v) for attrs, v in s["points"]],
                       aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=kind == "counter")
        metrics.append(Metric(name=s["name"], description=s.get("description") or "", unit=s.get("unit") or "",
                              data=data))
    return metrics


def from_otel(data: MetricsData | None) -> list[Series]:
    """What an SDK reader collected, as a series list."""
    out: list[Series] = []
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                d = m.data
                if isinstance(d, Histogram):
                    points = [[dict(p.attributes or {}), {"count": p.count, "sum": p.sum,
                                                          "bounds": list(p.explicit_bounds),
                                                          "buckets": list(p.bucket_counts)}]
                              for p in d.data_points]
                    kind = "histogram"
                elif isinstance(d, Sum):
                    points = [[dict(p.attributes or {}), p.value] for p in d.data_points]
                    kind = "counter" if d.is_monotonic else "updown"
                elif isinstance(d, Gauge):
                    points = [[dict(p.attributes or {}), p.value] for p in d.data_points]
                    kind = "gauge"
                else:  # exponential histograms: not used here
                    continue
                out.append(series(m.name, kind, points, m.unit or "", m.description or ""))
    return out
