"""Logs (interfaces/logs.py): JSON lines that parse and carry the trace and span ids of the call
they were written in, from a worker of a real host; files that rotate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from trellis.interfaces import tracing
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.logs import JsonFormatter, setup_logging
from trellis.interfaces.rpc_client import RpcError

from ..local_calls.conftest import _build

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
RUN = "test:chain/runner.run"


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("trellis.test", logging.WARNING, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_current_span_or_the_passed_trace_context() -> None:
    fmt = JsonFormatter("worker-0")
    plain = json.loads(fmt.format(_record("no trace", component="greeter")))
    assert plain["msg"] == "no trace" and plain["level"] == "warning" and plain["process"] == "worker-0"
    assert plain["component"] == "greeter" and "trace_id" not in plain
    with TracerProvider().get_tracer("t").start_as_current_span("serve") as span:
        ctx = span.get_span_context()
        traced = json.loads(fmt.format(_record("in a span")))
    assert traced["trace_id"] == format(ctx.trace_id, "032x") and traced["span_id"] == format(ctx.span_id, "016x")
    token = tracing.pass_through({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    try:
        passed = json.loads(fmt.format(_record("passed through")))
    finally:
        tracing.end_pass_through(token)
    assert (passed["trace_id"], passed["span_id"]) == (TRACE_ID, PARENT_ID)


def test_files_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRELLIS_LOG_MAX_BYTES", "2000")
    monkeypatch.setenv("TRELLIS_LOG_BACKUPS", "2")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("wadm", level="info", fmt="json", to="files", log_dir=tmp_path)
        for i in range(200):
            logging.getLogger("trellis.test").info("line %d", i)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wadm.log", "wadm.log.1", "wadm.log.2"]
    last = [json.loads(line) for line in (tmp_path / "wadm.log").read_text().splitlines()]
    assert last[-1]["msg"] == "line 199" and all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())


async def test_a_workers_json_log_lines_carry_the_callers_trace(nats_server, lattice, hosts, tmp_path):
    logchain = _build("logchain", tmp_path)
    h = await hosts.start(workers=1, log_format="json", log_to="files")
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(logchain), "relay", max_instances=2)
        # relay logs "relaying", then calls its `next` link, which is missing: the call fails after the log line
        with pytest.raises(RpcError):
            await c.rpc.call("relay", RUN, ["x"], trace={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    logs = h.settings.state_dir / "logs"
    lines = [json.loads(line) for line in (logs / "worker-0.log").read_text().splitlines() if line.strip()]
    relaying = [r for r in lines if r.get("component") == "relay" and "relaying" in r["msg"]]
    assert relaying, lines
    assert relaying[0]["trace_id"] == TRACE_ID and relaying[0]["process"] == "worker-0"
    assert relaying[0]["logger"] == "trellis.component" and relaying[0]["level"] == "info"
