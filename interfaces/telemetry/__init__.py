"""Metrics as plain data (``series.py``): the series lists one process hands another, and the
cheap per-call histogram. A process's meter provider and exporters are the runtime kit's
(``trellis/kit/meters.py``)."""

from .series import LATENCY_BOUNDS_S, FastHistogram, Series, from_otel, merge, series, to_otel

__all__ = [
    "LATENCY_BOUNDS_S",
    "FastHistogram",
    "Series",
    "from_otel",
    "merge",
    "series",
    "to_otel",
]
