"""Metrics over OTLP when the SDK's variables ask for it: a process's instruments and its per-call
series reach a collector (here a bare OTLP/HTTP receiver); without the exporter installed, one
clear message naming the extra."""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from trellis.interfaces.telemetry import series
from trellis.kit.meters import Telemetry


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportMetricsServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/metrics":
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            self.received.append(req)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_metrics_reach_an_otlp_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # only when flushed below
        t = Telemetry("trellis-test")
        t.meter.create_counter("trellis.host.heartbeats").add(2, {"host": "h"})
        t.producers.append(lambda: [series("trellis.invocations", "counter", [[{"component": "c"}, 5]])])
        assert t.provider.force_flush(10_000)
        t.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    names = {m.name: m for req in _Collector.received for rm in req.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "trellis.host.heartbeats" in names, names.keys()
    assert names["trellis.host.heartbeats"].sum.data_points[0].as_int == 2
    assert names["trellis.invocations"].sum.data_points[0].as_int == 5
    resource = {a.key: a.value.string_value for a in _Collector.received[0].resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "trellis-test" and resource["service.instance.id"]


def test_otlp_asked_for_without_the_exporter_says_which_extra(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.metric_exporter", None)
    with caplog.at_level(logging.ERROR):
        t = Telemetry("trellis-test")
    t.shutdown()
    assert "pip install 'trellis-wasm[otlp]'" in caplog.text


def test_a_cli_command_is_a_span() -> None:
    """With OTEL_TRACES_EXPORTER set, a command is the root span of what it asks the lattice (here it
    fails to connect: the span is still recorded and flushed)."""
    import json as _json

    from ..harness import run_cli

    r = run_cli("get", "hosts", "--nats-url", "nats://127.0.0.1:1", env={"OTEL_TRACES_EXPORTER": "console"})
    assert r.returncode != 0
    spans = [_json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert [s["name"] for s in spans] == ["trellis get hosts"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "trellis-cli"
