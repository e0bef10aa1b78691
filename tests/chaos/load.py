"""A steady load of calls with every outcome counted, bounded in count and time.

    async with Load(client, "svc", "ok", expect=42, concurrency=20) as load:
        await load.wait_ok(200)          # under way
        ...                              # break something
    load.summary()                       # ok, failed, latency percentiles, failures by message

``concurrency`` callers each make one call after another, so that many calls are in
flight at all times. Each caller stops when the load is stopped, when ``max_calls``
calls have been made in all, or ``max_s`` after the start, whichever comes first.

Every outcome is kept (for ``summary(since=...)``) unless ``keep_all=False``: then
only counts, the failures (up to 1000) and a fixed-size sample of latencies are kept,
so a long soak measures the platform's memory, not this bookkeeping.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trellis.interfaces.client import LatticeClient


@dataclass
class Outcome:
    at: float  # monotonic seconds
    latency_s: float
    error: str | None = None


@dataclass
class Load:
    client: LatticeClient
    target: str
    operation: str
    args: list[Any] = field(default_factory=list)
    expect: Any = None
    concurrency: int = 20
    timeout_s: float = 15.0
    max_calls: int = 10_000_000  # the time bound (max_s) is what usually ends a load
    max_s: float = 120.0
    pause_s: float = 0.0
    keep_all: bool = True
    outcomes: list[Outcome] = field(default_factory=list)

    SAMPLE = 20_000

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0
        self._ok = 0
        self._failed: list[Outcome] = []
        self._failed_count = 0
        self._sample: list[float] = []  # latencies (s) of successful calls, reservoir-sampled
        self._rng = random.Random(7)
        self.t0 = 0.0
        self._last = 0.0

    async def __aenter__(self) -> Load:
        self.t0 = time.monotonic()
        self._tasks = [asyncio.create_task(self._caller(), name=f"load-{i}") for i in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _caller(self) -> None:
        deadline = self.t0 + self.max_s
        while not self._stop.is_set() and self._started < self.max_calls and time.monotonic() < deadline:
            self._started += 1
            t = time.monotonic()
            error = None
            try:
                got = await self.client.call(self.target, self.operation, *self.args, timeout_s=self.timeout_s)
                if self.expect is not None and got != self.expect:
                    error = f"wrong result {got!r}"
            except Exception as exc:
                error = f"{exc.__class__.__name__}: {getattr(exc, 'message', exc)}"
            now = time.monotonic()
            self._count(Outcome(now, now - t, error))
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def finished(self) -> None:
        """Until every caller has stopped by itself (``max_calls`` made or ``max_s`` passed)."""
        await asyncio.gather(*self._tasks)

    def _count(self, o: Outcome) -> None:
        self._last = o.at
        if self.keep_all:
            self.outcomes.append(o)
        if o.error is not None:
            self._failed_count += 1
            if len(self._failed) < 1000:
                self._failed.append(o)
            return
        self._ok += 1
        if len(self._sample) < self.SAMPLE:
            self._sample.append(o.latency_s)
        else:
            i = self._rng.randrange(self._ok)
            if i < self.SAMPLE:
                self._sample[i] = o.latency_s

    @property
    def ok(self) -> int:
        return self._ok

    @property
    def failed(self) -> list[Outcome]:
        return self._failed

    async def wait_ok(self, more: int, timeout: float = 30.0) -> None:
        """Until ``more`` further calls have succeeded (condition with a deadline, not a sleep)."""
        want = self.ok + more
        deadline = time.monotonic() + timeout
        while self.ok < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made {self.ok}/{want} successful calls in {timeout}s; "
                                     f"failures: {self.errors()}")
            if all(t.done() for t in self._tasks):
                raise AssertionError(f"load ended with {self.ok}/{want} successful calls; failures: {self.errors()}")
            await asyncio.sleep(0.05)

    def errors(self) -> dict[str, int]:
        return dict(Counter(o.error for o in self.failed if o.error).most_common(5))

    def summary(self, since: float | None = None) -> dict[str, Any]:
        if not self.keep_all:
            assert since is None, "summary(since=...) needs keep_all=True"
            return self._summary_counted()
        chosen = [o for o in self.outcomes if since is None or o.at >= since]
        lat = sorted(o.latency_s * 1000 for o in chosen if o.error is None)
        span = (max(o.at for o in chosen) - min(o.at - o.latency_s for o in chosen)) if chosen else 0.0
        return {
            "calls": len(chosen),
            "ok": len(lat),
            "failed": len(chosen) - len(lat),
            "success_pct": round(100.0 * len(lat) / len(chosen), 3) if chosen else 0.0,
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
            "max_ms": round(lat[-1], 2) if lat else None,
            "rps": round(len(chosen) / span, 1) if span > 0 else None,
            "errors": dict(Counter(o.error for o in chosen if o.error).most_common(5)),
        }

    def _summary_counted(self) -> dict[str, Any]:
        lat = sorted(x * 1000 for x in self._sample)
        calls = self._ok + self._failed_count
        span = self._last - self.t0
        return {
            "calls": calls,
            "ok": self._ok,
            "failed": self._failed_count,
            "success_pct": round(100.0 * self._ok / calls, 3) if calls else 0.0,
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
            "max_ms": None,  # not kept: only a sample of latencies is
            "rps": round(calls / span, 1) if span > 0 else None,
            "errors": self.errors(),
        }
