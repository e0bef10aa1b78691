"""Timing and summary statistics shared by the benchmarks (pure functions)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN when empty."""
    if not samples:
        return math.nan
    s = sorted(samples)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_summary_us(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max of latencies given in seconds, reported in microseconds."""
    us = [x * 1e6 for x in samples_s]
    if not us:
        return {"n": 0}
    return {
        "n": len(us),
        "p50_us": round(percentile(us, 50), 1),
        "p90_us": round(percentile(us, 90), 1),
        "p99_us": round(percentile(us, 99), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "max_us": round(max(us), 1),
    }


def per_call_us(fn: Callable[[], object], calls: int, repeats: int, budget_s: float) -> dict[str, float]:
    """Time ``repeats`` batches of ``calls`` calls; µs per call of the best batch (and the median).

    The best batch is the figure least disturbed by other work on the machine
    (the same reason ``timeit`` reports a minimum).

    Stops early, after at least two batches, once ``budget_s`` is spent, so a
    slow machine cannot stretch a run without bound.
    """
    batches: list[float] = []
    started = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        batches.append((time.perf_counter() - t) / calls * 1e6)
        if len(batches) >= 2 and time.perf_counter() - started > budget_s:
            break
    return {
        "us_per_call": round(min(batches), 2),
        "median_us_per_call": round(statistics.median(batches), 2),
        "batches": len(batches),
        "calls_per_batch": calls,
    }


def ratio(trellis: float, baseline: float) -> float:
    """trellis / baseline, rounded; NaN when the baseline is zero or missing."""
    if not baseline or math.isnan(baseline) or math.isnan(trellis):
        return math.nan
    return round(trellis / baseline, 2)
