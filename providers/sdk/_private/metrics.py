"""A provider instance's metrics: its calls by function and caller, added up cheaply.

Per function: calls by outcome and a latency histogram; per caller (the component a
link calls from): calls and the time they spent here, so a host can split the
provider process's CPU across the links that used it (``trellis app usage``). The host
that runs the instance asks for the series list over NATS
(``trellis.<lattice>.prov.<provider>.<host>.metrics``) and exports it with its own; over
OTLP the instance exports its own (``trellis/kit/meters.py``).
"""

from __future__ import annotations

from typing import Any

from trellis.interfaces.telemetry import FastHistogram, Series, series

#: distinct functions / callers kept apart; more are counted under OTHER (bounded labels)
MAX_KEYS = 256
OTHER = "(other)"


class ProviderTally:
    def __init__(self, provider_id: str, host_id: str) -> None:
        self.labels = {"provider": provider_id, "host": host_id}
        #: function -> [ok, errors, latency]
        self.functions: dict[str, list[Any]] = {}
        #: caller -> [calls, seconds]
        self.callers: dict[str, list[float]] = {}

    def add(self, function: str, caller: str, seconds: float, ok: bool) -> None:
        """One call ended (on the event loop: no lock)."""
        f = self.functions.get(function)
        if f is None:
            if len(self.functions) >= MAX_KEYS:
                function = OTHER
            f = self.functions.setdefault(function, [0, 0, FastHistogram()])
        f[0 if ok else 1] += 1
        f[2].record(seconds)
        c = self.callers.get(caller)
        if c is None:
            if len(self.callers) >= MAX_KEYS:
                caller = OTHER
            c = self.callers.setdefault(caller, [0, 0.0])
        c[0] += 1
        c[1] += seconds

    def series(self) -> list[Series]:
        calls, latency, by_caller, busy = [], [], [], []
        for fn, (ok, err, hist) in self.functions.items():
            labels = {**self.labels, "function": fn}
            calls.append([{**labels, "outcome": "ok"}, ok])
            if err:
                calls.append([{**labels, "outcome": "error"}, err])
            latency.append([labels, hist.plain()])
        for caller, (n, seconds) in self.callers.items():
            labels = {**self.labels, "caller": caller}
            by_caller.append([labels, n])
            busy.append([labels, seconds])
        return [
            series("trellis.provider.calls", "counter", calls, "",
                   "Calls a provider answered, by function and outcome"),
            series("trellis.provider.call.duration", "histogram", latency, "s",
                   "Time a provider took to answer a call"),
            series("trellis.provider.caller.calls", "counter", by_caller, "", "Calls a provider answered, by caller"),
            series("trellis.provider.caller.busy", "counter", busy, "s",
                   "Time a provider spent answering each caller (splits its CPU across links)"),
        ]
