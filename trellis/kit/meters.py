"""A process's metrics: one OpenTelemetry meter provider, its readers, and producers of plain series.

Every Trellis process (host, worker, provider, wadm, the CLI's ``trellis up``) makes one
:class:`Telemetry`. Instruments that are not on a per-call path are ordinary SDK
instruments (``telemetry.meter``); per-call figures are added up in plain Python by the
process (OpenTelemetry's ``record()`` costs ~10 µs, several times a call's own overhead)
and handed over as *producers*: callables returning a series list (``series.py``), read
only when something collects. Readers:

* an in-memory reader, so a parent process can ask for :meth:`Telemetry.snapshot`
  (a worker's host over the worker's channel; a provider's host over NATS);
* Prometheus (:meth:`Telemetry.serve_prometheus`, ``--metrics-port``): the SDK's
  Prometheus exporter, its text served by ``prometheus_client``; *gatherers* add the
  children's snapshots to it (a host's workers and providers);
* OTLP, when ``OTEL_METRICS_EXPORTER=otlp`` (the SDK's own variables:
  ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``,
  ``OTEL_METRIC_EXPORT_INTERVAL``, ...). Each process exports its own figures, with
  ``service.name`` and ``service.instance.id``; the exporter is the ``[otlp]`` extra
  (``pip install 'trellis-wasm[otlp]'``).

Per-call measuring is a worker's ``tuning.process.metrics`` (``TRELLIS_METRICS=0`` turns it
off: no records are built; a benchmark's "off" side); the process's other instruments stay.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from trellis.interfaces.telemetry.series import LATENCY_BOUNDS_S, Series, from_otel, merge, to_otel

log = logging.getLogger(__name__)

OTLP_EXTRA_HINT = "pip install 'trellis-wasm[otlp]'"

Producer = Callable[[], list[Series]]

_SCOPE = InstrumentationScope("trellis")


class Telemetry:
    """One process's meter provider, readers and producers (see the module doc)."""

    def __init__(self, service: str, attributes: dict[str, str] | None = None, *, prometheus: bool = False,
                 otlp: bool | None = None) -> None:
        self.service = service
        self.producers: list[Producer] = []
        #: series of child processes, for Prometheus only (they export OTLP themselves)
        self.gatherers: list[Producer] = []
        self._memory = InMemoryMetricReader()
        readers: list[MetricReader] = [self._memory]
        self._registry: Any = None
        if prometheus:  # served by serve_prometheus
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            readers.append(_prometheus_reader(self, self._registry))
        want_otlp = otlp if otlp is not None else _otlp_requested()
        if want_otlp:
            exporter = otlp_exporter()
            if exporter is not None:
                readers.append(PeriodicExportingMetricReader(_ProducingExporter(exporter, self)))
        self.resource = Resource.create({
            "service.name": os.environ.get("OTEL_SERVICE_NAME", service),
            "service.instance.id": str(uuid.uuid4()), "host.name": socket.gethostname(), **(attributes or {})})
        self._readers = readers
        self.provider = MeterProvider(
            metric_readers=readers, resource=self.resource, exemplar_filter=AlwaysOffExemplarFilter(),
            views=[View(instrument_name="*duration*",
                        aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BOUNDS_S)),
                   View(instrument_name="*wait*",
                        aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BOUNDS_S))])
        self.meter = self.provider.get_meter("trellis")
        self._server: Any = None
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------

    def produced(self) -> list[Series]:
        out: list[Series] = []
        for producer in self.producers:
            try:
                out.extend(producer())
            except Exception:
                log.exception("metrics producer %r failed", producer)
        return out

    def snapshot(self) -> list[Series]:
        """This process's metrics as a series list (its instruments and its producers)."""
        with self._lock:
            own = from_otel(self._memory.get_metrics_data())
        return merge([own, self.produced()])

    def gathered(self) -> list[Series]:
        out: list[Series] = []
        for gather in self.gatherers:
            try:
                out.extend(gather())
            except Exception:
                log.exception("metrics gatherer %r failed", gather)
        return out

    def extend(self, data: MetricsData, *, gather: bool) -> MetricsData:
        """``data`` plus the producers' series (and, when ``gather``, the children's)."""
        extra = self.produced()
        if gather:
            extra = merge([extra, self.gathered()])
        if not extra:
            return data
        produced = to_otel(extra)
        if not data.resource_metrics:
            scope = ScopeMetrics(scope=_SCOPE, metrics=produced, schema_url="")
            return MetricsData(resource_metrics=[ResourceMetrics(resource=self.resource, scope_metrics=[scope],
                                                                 schema_url="")])
        # into the process's own resource and "trellis" scope: exporters key both (OTLP's encoder
        # keeps one entry per resource and scope, so a second one of either would replace the first)
        first, *rest = data.resource_metrics
        scopes = list(first.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == _SCOPE.name:
                scopes[i] = ScopeMetrics(scope=sm.scope, metrics=[*sm.metrics, *produced], schema_url=sm.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(scope=_SCOPE, metrics=produced, schema_url=""))
        merged = ResourceMetrics(resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url)
        return MetricsData(resource_metrics=[merged, *rest])

    # -- Prometheus ---------------------------------------------------------------------

    def serve_prometheus(self, port: int, addr: str = "0.0.0.0") -> tuple[str, int]:
        """Serve ``/metrics`` (Prometheus text) on ``addr:port`` (port 0: any free one); the address
        bound. Needs ``Telemetry(..., prometheus=True)``."""
        from prometheus_client import start_http_server

        if self._registry is None:
            raise RuntimeError("this Telemetry was made without prometheus=True")
        server, _thread = start_http_server(port, addr=addr, registry=self._registry)
        self._server = server
        host, bound = server.server_address[:2]
        return str(host), int(bound)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self.provider.shutdown(timeout_millis=2000)
        except Exception:  # exporters that cannot flush (no collector) must not stop a process
            pass


def _otlp_requested() -> bool:
    names = {n.strip().lower() for n in os.environ.get("OTEL_METRICS_EXPORTER", "none").split(",")}
    return "otlp" in names


def otlp_exporter() -> MetricExporter | None:
    """The SDK's OTLP metric exporter (protocol by ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``grpc`` or
    ``http/protobuf``, the default), or None with a message naming the extra to install."""
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError:
        log.error("OTEL_METRICS_EXPORTER=otlp asks for OTLP metrics, but the OTLP exporter is not installed: %s",
                  OTLP_EXTRA_HINT)
        return None
    exporter: MetricExporter = OTLPMetricExporter()
    return exporter


class _ProducingExporter(MetricExporter):
    """Wraps an exporter: what it exports also carries the process's producers' series."""

    def __init__(self, inner: MetricExporter, telemetry: Telemetry) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.telemetry = telemetry

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self.inner.export(self.telemetry.extend(metrics_data, gather=False), timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis)


def _prometheus_reader(telemetry: Telemetry, registry: Any) -> MetricReader:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    class _Reader(PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
            super()._receive_metrics(telemetry.extend(metrics_data, gather=True), timeout_millis, **kwargs)

    return _Reader(registry=registry, scope_info_enabled=False)
