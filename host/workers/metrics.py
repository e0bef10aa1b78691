"""A worker's metrics, as a series list (``interfaces/telemetry/series.py``) its host asks for.

Read when something collects (the ``metrics`` worker op), from the call tally
(``tally.py``) and the counters the worker keeps anyway (its components' invokers, RPC
servers, compile cache, link calls): nothing here runs per call. The host adds its
workers' lists up (the same name and labels: summed) and exports them with its own.
Labels are bounded: app, component, function (at most ``tally.MAX_FUNCTIONS`` per
component), host, and small enumerations (outcome, error kind, path).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trellis.interfaces.carbon import CarbonModel
from trellis.interfaces.telemetry import Series, series

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)

#: link calls by the way they went (imports.py counts): label values
LINK_PATHS = {"colocated": "colocated", "direct": "provider_socket", "nats": "nats"}


_model: CarbonModel | None = None


def carbon_model() -> CarbonModel:
    """The usage model from the TRELLIS_* variables (read once; bad values: the defaults, logged)."""
    global _model
    if _model is None:
        try:
            _model = CarbonModel.from_env()
        except ValueError as exc:
            log.warning("usage model: %s; using the defaults", exc)
            _model = CarbonModel()
    return _model


def worker_series(worker: Worker) -> list[Series]:
    host = worker.host_id
    tally = worker.tally
    calls: list[list[Any]] = []
    errors: list[list[Any]] = []
    latency: list[list[Any]] = []
    for cid, app, fn, ok, errs, hist in tally.function_stats():
        labels = {"app": app, "component": cid, "function": fn, "host": host}
        calls.append([{**labels, "outcome": "ok"}, ok])
        if errs:
            calls.append([{**labels, "outcome": "error"}, sum(errs.values())])
        for kind, n in errs.items():
            errors.append([{**labels, "kind": kind}, n])
        latency.append([labels, hist])
    cpu, wall, mem, fuel, cold, energy, carbon = [], [], [], [], [], [], []
    model = carbon_model()
    for cid, u in tally.usage().items():
        labels = {"app": u["app"], "component": cid, "host": host}
        energy.append([labels, model.energy_wh(u["cpu_s"], u["memory_byte_s"]) * 3600.0])
        carbon.append([labels, model.carbon_g(u["cpu_s"], u["memory_byte_s"])])
        cpu.append([labels, u["cpu_s"]])
        wall.append([labels, u["wall_s"]])
        mem.append([labels, u["memory_byte_s"]])
        cold.append([labels, u["cold_starts"]])
        if u["fuel"]:
            fuel.append([labels, u["fuel"]])
    started, live, links, busy, queued, waits, handoff = [], [], [], [], [], [], []
    for cid, s in list(worker.served.items()):
        labels = {"app": s.app, "component": cid, "host": host}
        started.append([labels, s.invoker.stats.instantiations])
        live.append([labels, s.invoker.live_instances])
        for key, n in s.link_calls.items():
            links.append([{**labels, "path": LINK_PATHS.get(key, key)}, n])
        for outcome, n in s.handoff.items():
            handoff.append([{**labels, "outcome": outcome}, n])
        if s.server is not None:
            short = {"component": cid, "host": host}
            busy.append([short, s.server.stats.get("busy", 0)])
            queued.append([short, s.server.waiting])
            waits.append([short, s.server.queue_wait.plain()])
    cache = worker.cache.stats
    host_only = {"host": host}
    return [
        series("trellis.invocations", "counter", calls, "",
               "Invocations a worker finished, by component, function and outcome"),
        series("trellis.invocation.errors", "counter", errors, "", "Failed invocations by error kind"),
        series("trellis.invocation.duration", "histogram", latency, "s",
               "Wall time of an invocation in the worker (waiting for a Wasm thread included)"),
        series("trellis.usage.cpu", "counter", cpu, "s", "CPU time of invocations (the threads that ran them)"),
        series("trellis.usage.wall", "counter", wall, "s", "Wall time of invocations"),
        series("trellis.usage.memory.byte_seconds", "counter", mem, "",
               "Instance memory held by invocations: bytes times seconds"),
        series("trellis.usage.fuel", "counter", fuel, "", "Fuel used by metered components"),
        series("trellis.usage.energy.joules", "counter", energy, "",
               "Estimated energy of invocations (docs/observability.md, the usage model)"),
        series("trellis.usage.carbon.grams", "counter", carbon, "",
               "Estimated emissions of invocations, gCO2e (docs/observability.md, the usage model)"),
        series("trellis.instances.cold_starts", "counter", cold, "", "Invocations that needed a fresh instance"),
        series("trellis.instances.started", "counter", started, "", "Instances created"),
        series("trellis.instances.live", "updown", live, "", "Instances that exist now (running or warm)"),
        series("trellis.link.calls", "counter", links, "",
               "Calls through links by path: colocated (same worker), provider_socket (same host), nats"),
        series("trellis.handoff.requests", "counter", handoff, "",
               "HTTP requests on connections handed to a worker: served there, failed, sent over NATS"),
        series("trellis.rpc.busy", "counter", busy, "", "Calls refused busy (slots and queue full)"),
        series("trellis.rpc.queued", "updown", queued, "", "Calls waiting for a slot now"),
        series("trellis.rpc.queue.wait", "histogram", waits, "s", "How long queued calls waited for a slot"),
        series("trellis.compile_cache.hits", "counter",
               [[{**host_only, "layer": "memory"}, cache.memory_hits], [{**host_only, "layer": "disk"},
                                                                        cache.disk_hits]],
               "", "Components loaded from the compile cache"),
        series("trellis.compile_cache.compiles", "counter", [[host_only, cache.compiled]], "",
               "Components compiled (cache misses)"),
    ]
