"""OpenTelemetry: one trace per request across hosts, exporters chosen by OTEL_* variables.

Nothing is exported unless ``OTEL_TRACES_EXPORTER`` is set (``console``, or
``otlp`` when an OTLP exporter package is installed). With no SDK configured
the RPC layer makes no spans at all (:func:`enabled` says which, cheaply): a
server passes the caller's trace context through unchanged (:func:`pass_through`)
to the calls it makes (:func:`inject`), so a trace still spans hosts that do
not record it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import Any

from opentelemetry import context as otel_context
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

    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
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
    _recheck()


_tracer: trace.Tracer | None = None
_enabled = False
_check_after = 0.0
#: how long "no SDK configured" is believed before looking again (a provider set by
#: other code than :func:`setup_tracing` is noticed within this time)
RECHECK_S = 1.0


def _recheck() -> None:
    global _tracer, _check_after
    _tracer = None  # the real tracer, not the proxy, from now on
    _check_after = 0.0


def enabled() -> bool:
    """Whether spans are recorded: an SDK tracer provider is set. Cheap: once it is, the
    answer is cached for good (a provider cannot be unset); until then it is looked up at
    most every :data:`RECHECK_S` (the lookup itself costs ~1.5 µs)."""
    global _enabled, _check_after
    if _enabled:
        return True
    now = time.monotonic()
    if now < _check_after:
        return False
    _check_after = now + RECHECK_S
    _enabled = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    if _enabled:
        _recheck()
    return _enabled


def tracer() -> trace.Tracer:
    """The process's tracer (a proxy until an SDK is configured, then the real one)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("trellis")
    return _tracer


#: the trace context of the invocation being served, when no span was made for it
_passed: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("trellis_trace_passed", default=None)


def pass_through(carrier: dict[str, str]) -> contextvars.Token[dict[str, str] | None]:
    """Serving ``carrier``'s invocation without a span (tracing off): calls made from the
    current context carry it on unchanged (:func:`inject`), as a no-op span would. A context
    that serves one call after another ends each with :func:`end_pass_through`."""
    valid = bool(carrier) and all(type(k) is str and type(v) is str for k, v in carrier.items())
    return _passed.set(carrier if valid else None)


def end_pass_through(token: contextvars.Token[dict[str, str] | None]) -> None:
    _passed.reset(token)


def inject() -> dict[str, str]:
    """The trace context to send with a call made now: the current span's, or, when no span
    is current, the one passed through (:func:`pass_through`), or nothing."""
    if not otel_context.get_current():  # no span, no baggage: nothing for a propagator to write
        passed = _passed.get()
        return dict(passed) if passed else {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: dict[str, str]) -> Any:
    """The context ``carrier`` describes (an empty one, i.e. a new trace, when it is empty or
    unreadable: a malformed carrier must not fail the call it came with)."""
    if not carrier:
        return otel_context.Context()
    try:
        return propagate.extract(carrier)
    except Exception:
        return otel_context.Context()
