"""Live traffic per component, lattice-wide, from the workers' traffic tap (``interfaces/taps.py``).

:class:`TrafficWatch` asks every worker for traffic summaries (renewing the wish while
it runs), files each report under the second it arrived, and answers per component:
calls and errors per second and p50/p99 latency over the last ``WINDOW_S`` seconds, the
calls of each of the last ``HISTORY_S`` seconds (a sparkline) and the calls seen in all.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from trellis.interfaces import subjects
from trellis.interfaces.taps import RENEW_EVERY_S, ComponentTraffic, TapWant, TrafficReport, percentile_ms

log = logging.getLogger(__name__)

WINDOW_S = 10
HISTORY_S = 60


class TrafficWatch:
    def __init__(self, lattice: str) -> None:
        self.lattice = lattice
        #: component -> second (int, monotonic) -> that second's merged traffic
        self._seconds: dict[str, collections.OrderedDict[int, ComponentTraffic]] = {}
        self.totals: dict[str, int] = {}
        self.apps: dict[str, str] = {}
        #: the second the first report arrived: before it, nothing was watched (not "no calls")
        self._first: int | None = None
        self._nc: Any = None
        self._sub: Any = None
        self._renew: asyncio.Task[None] | None = None
        self.on_change: Any = None

    async def start(self, nc: Any) -> None:
        self._nc = nc
        self._sub = await nc.subscribe(subjects.tap_traffic_wildcard(self.lattice), cb=self._on_report)
        self._renew = asyncio.get_running_loop().create_task(self._keep_asking(), name="traffic-want")

    async def close(self) -> None:
        if self._renew is not None:
            self._renew.cancel()
            await asyncio.gather(self._renew, return_exceptions=True)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass

    async def _keep_asking(self) -> None:
        want = TapWant(traffic=True).model_dump_json().encode()
        while True:
            try:
                await self._nc.publish(subjects.tap_want(self.lattice), want)
            except Exception as exc:  # disconnected: ask again on the next round
                log.debug("traffic wish not sent: %r", exc)
            await asyncio.sleep(RENEW_EVERY_S)

    async def _on_report(self, msg: Any) -> None:
        try:
            report = TrafficReport.model_validate_json(msg.data)
        except ValueError:
            return
        self.add(report, int(time.monotonic()))
        if self.on_change is not None:
            self.on_change()

    def add(self, report: TrafficReport, second: int) -> None:
        if self._first is None:
            self._first = second
        for cid, t in report.components.items():
            seconds = self._seconds.setdefault(cid, collections.OrderedDict())
            here = seconds.get(second)
            if here is None:
                here = seconds[second] = ComponentTraffic(app=t.app)
            here.merge(t)
            self.totals[cid] = self.totals.get(cid, 0) + t.calls
            self.apps[cid] = t.app
            while seconds and next(iter(seconds)) <= second - HISTORY_S:
                seconds.popitem(last=False)

    def summary(self, now: int | None = None) -> dict[str, dict[str, Any]]:
        """Per component: rps, errors_per_s, p50_ms, p99_ms (last WINDOW_S s), history, total."""
        now = int(time.monotonic()) if now is None else now
        out: dict[str, dict[str, Any]] = {}
        span = max(1, min(WINDOW_S, now - (self._first if self._first is not None else now)))
        for cid, seconds in self._seconds.items():
            window = ComponentTraffic()
            # the second under way is still filling: the window is the WINDOW_S seconds before it
            for sec, t in seconds.items():
                if now - WINDOW_S <= sec < now:
                    window.merge(t)
            history = [seconds[s].calls if s in seconds else 0 for s in range(now - HISTORY_S, now)]
            p50, p99 = percentile_ms(window.latency, 0.5), percentile_ms(window.latency, 0.99)
            out[cid] = {"app": self.apps.get(cid, ""), "rps": round(window.calls / span, 2),
                        "errors_per_s": round(window.errors / span, 3),
                        "p50_ms": None if p50 is None else round(p50, 3),
                        "p99_ms": None if p99 is None else round(p99, 3),
                        "history": history, "total": self.totals.get(cid, 0)}
        return out
