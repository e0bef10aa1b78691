"""OpenTelemetry: one trace per request across hosts, exporters chosen by OTEL_* variables.

Nothing is exported unless ``OTEL_TRACES_EXPORTER`` is set (``console``, or
``otlp`` when an OTLP exporter package is installed); with no SDK configured
the OpenTelemetry API is a no-op, so tracing costs nothing when off.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry import propagate, trace

log = logging.getLogger(__name__)
_configured = False


def setup_tracing(service_name: str) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}))
    exporter: Any
    if exporter_name == "console":
        # stderr, one JSON object a line: stdout may be a process's command channel
        exporter = ConsoleSpanExporter(out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n")
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp is not installed")
            return
        exporter = OTLPSpanExporter()
    else:
        log.warning("unknown OTEL_TRACES_EXPORTER %r; tracing off", exporter_name)
        return
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The process's tracer (a proxy until an SDK is configured, then the real one)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("trellis")
    return _tracer


def inject() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: dict[str, str]) -> Any:
    return propagate.extract(carrier or {})
