"""The worker's taps: spy records and traffic summaries, sent only while someone watches.

Watchers publish :class:`trellis.interfaces.taps.TapWant` wishes with a time to live
(``interfaces/taps.py``). :class:`Taps` keeps them; when none is live it costs a
dictionary lookup per call (spy) and one boolean test per record (traffic).

* :meth:`Taps.served` is called by ``Worker.record`` for every finished call with its
  arguments and result; a spied component's call becomes a ``SpyRecord`` (``in``).
* :meth:`Taps.outgoing` wraps nothing: the import router asks :meth:`Taps.spied` once
  per invocation and, for a spied component, reports each import call it made (``out``).
* :meth:`Taps.__call__` is an invocation observer (``records.py``) that adds calls to
  the traffic summary, published once a second while the dashboard watches.

Called on Wasm threads and on the loop: the shared state is guarded by a lock, and
publishing is handed to the loop.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from trellis.interfaces import subjects
from trellis.interfaces.taps import ComponentTraffic, SpyRecord, TapWant, TrafficReport, abbreviate

if TYPE_CHECKING:
    from trellis.interfaces.envelope import Invocation

    from .records import InvocationRecord

log = logging.getLogger(__name__)

TRAFFIC_EVERY_S = 1.0


def _iso(unix: float) -> str:
    return _dt.datetime.fromtimestamp(unix, _dt.UTC).isoformat()


class Taps:
    def __init__(self, nc: Any, lattice: str, host_id: str, worker: int, loop: asyncio.AbstractEventLoop) -> None:
        self.nc = nc
        self.lattice = lattice
        self.host_id = host_id
        self.worker = worker
        self.loop = loop
        #: component id -> monotonic deadline of the spy wish
        self.spying: dict[str, float] = {}
        self.traffic_until = 0.0
        self._lock = threading.Lock()
        self._traffic: dict[str, ComponentTraffic] = {}
        self._since = time.monotonic()
        self._sub: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._watched = asyncio.Event()  # set by a traffic wish: the ticker sleeps on it while nobody watches

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(subjects.tap_want(self.lattice), cb=self._on_want)
        self._ticker = self.loop.create_task(self._report_traffic(), name="taps-traffic")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass

    async def _on_want(self, msg: Any) -> None:
        try:
            want = TapWant.model_validate_json(msg.data)
        except ValueError:
            return
        until = time.monotonic() + want.ttl_s
        if want.spy:
            if want.ttl_s > 0:
                self.spying[want.spy] = until
            else:
                self.spying.pop(want.spy, None)
        if want.traffic:
            self.traffic_until = until if want.ttl_s > 0 else 0.0
            if self.traffic_until:
                self._watched.set()

    # --- spy -----------------------------------------------------------------------------

    def spied(self, component_id: str) -> bool:
        """Whether a live wish spies on ``component_id`` (a lapsed one is dropped)."""
        if not self.spying:
            return False
        until = self.spying.get(component_id)
        if until is None:
            return False
        if until < time.monotonic():
            self.spying.pop(component_id, None)
            return False
        return True

    def served(self, record: InvocationRecord, args: Any, result: Any, exc: BaseException | None) -> None:
        """A finished call of a component (any thread): a spy record when it is spied on."""
        if not self.spying or not self.spied(record.component):
            return
        self.loop.call_soon_threadsafe(self._publish_in, record, args, result, exc)

    def _publish_in(self, r: InvocationRecord, args: Any, result: Any, exc: BaseException | None) -> None:
        rec = SpyRecord(
            time=_iso(r.start), direction="in", component=r.component, app=r.app, caller=r.caller,
            target=r.component, function=r.function, args=abbreviate(args),
            result=abbreviate(result) if exc is None else _error_text(exc), outcome=r.outcome,
            error_kind=r.error_kind, duration_ms=round(r.wall_s * 1000, 3), host=r.host, worker=r.worker,
            via=r.via, cold=r.cold, invocation_id=r.invocation_id)
        self._send(subjects.tap_spy(self.lattice, r.component), rec.model_dump_json().encode())

    def outgoing(self, component_id: str, app: str, call: Invocation, via: str, start: float, wall_s: float,
                 result: Any, exc: BaseException | None) -> None:
        """A call a spied component made through its imports (on its Wasm thread)."""
        self.loop.call_soon_threadsafe(self._publish_out, component_id, app, call, via, start, wall_s, result, exc)

    def _publish_out(self, component_id: str, app: str, call: Invocation, via: str, start: float,
                     wall_s: float, result: Any, exc: BaseException | None) -> None:
        rec = SpyRecord(
            time=_iso(start), direction="out", component=component_id, app=app, caller=component_id,
            target=call.target, function=call.operation, args=abbreviate(call.args),
            result=abbreviate(result) if exc is None else _error_text(exc),
            outcome="ok" if exc is None else "error", error_kind=None if exc is None else exc.__class__.__name__,
            duration_ms=round(wall_s * 1000, 3), host=self.host_id, worker=self.worker, via=via,
            invocation_id=call.id)
        self._send(subjects.tap_spy(self.lattice, component_id), rec.model_dump_json().encode())

    # --- traffic ---------------------------------------------------------------------------

    def __call__(self, record: InvocationRecord) -> None:
        """Observer: count the call into the traffic summary while the dashboard watches."""
        if not self.traffic_until:
            return
        with self._lock:
            t = self._traffic.get(record.component)
            if t is None:
                t = self._traffic[record.component] = ComponentTraffic(app=record.app)
            t.add(record.wall_s * 1000, record.ok)

    async def _report_traffic(self) -> None:
        """Once a second while a traffic wish lives; between wishes it waits for one (an idle worker
        is not woken for nobody)."""
        while True:
            if not self.traffic_until:
                self._watched.clear()
                await self._watched.wait()
                self._since = time.monotonic()
            await asyncio.sleep(TRAFFIC_EVERY_S)
            now = time.monotonic()
            if self.traffic_until and self.traffic_until < now:
                self.traffic_until = 0.0
            with self._lock:
                traffic, self._traffic = self._traffic, {}
            interval, self._since = now - self._since, now
            if traffic and self.traffic_until:
                report = TrafficReport(host=self.host_id, worker=self.worker, interval_s=round(interval, 3),
                                       components=traffic)
                self._send(subjects.tap_traffic(self.lattice, self.host_id), report.model_dump_json().encode())

    def _send(self, subject: str, payload: bytes) -> None:
        async def go() -> None:
            try:
                await self.nc.publish(subject, payload)
            except Exception as exc:  # disconnected or closing: a watcher misses a record, nothing else
                log.debug("tap record not sent: %r", exc)

        task = self.loop.create_task(go())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


def _error_text(exc: BaseException) -> str:
    return abbreviate(getattr(exc, "message", None) or str(exc) or exc.__class__.__name__)
