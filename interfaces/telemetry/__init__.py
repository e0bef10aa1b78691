"""Metrics for every Trellis process: an OpenTelemetry meter provider per process, per-call figures
added up cheaply as plain series, Prometheus and OTLP exporters (see ``meters.py``, ``series.py``)."""

from .meters import ENABLE_ENV, OTLP_EXTRA_HINT, Producer, Telemetry, otlp_exporter, per_call_enabled
from .series import LATENCY_BOUNDS_S, FastHistogram, Series, from_otel, merge, series, to_otel

__all__ = [
    "ENABLE_ENV",
    "LATENCY_BOUNDS_S",
    "OTLP_EXTRA_HINT",
    "FastHistogram",
    "Producer",
    "Series",
    "Telemetry",
    "from_otel",
    "merge",
    "otlp_exporter",
    "per_call_enabled",
    "series",
    "to_otel",
]
