"""A host's metrics: its own instruments, and its workers' and providers' figures gathered for Prometheus.

The host makes a :class:`~trellis.kit.meters.Telemetry` (``trellis-host``). Its own
instruments: heartbeats, capacity (CPUs, memory, load, instance slots), artifact fetches,
worker restarts, and its providers' processes (CPU seconds and resident memory, labelled
with the provider's app). With ``--metrics-port`` it serves Prometheus text at
``/metrics``; a scrape then asks each worker for its series over the worker's channel
(``host/workers/metrics.py``) and each provider over NATS
(``trellis.<lattice>.prov.<provider>.<host>.metrics``), and adds them up with its own.
With ``scope="lattice"`` (``trellis up``) it also asks every wadm controller
(``trellis.<lattice>.wadm.metrics``). Over OTLP every process exports its own figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING

import psutil
from opentelemetry.metrics import CallbackOptions, Observation

from trellis.interfaces import subjects
from trellis.interfaces.annotations import APP_ANNOTATION
from trellis.interfaces.artifacts import ArtifactError, parse_ref
from trellis.interfaces.telemetry import Series, merge
from trellis.kit.meters import Telemetry

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger(__name__)

#: how long a scrape waits for the workers, providers and controllers to answer
GATHER_TIMEOUT_S = 3.0


class HostMetrics:
    def __init__(self, host: Host, *, prometheus: bool = False, scope: str = "host") -> None:
        self.host = host
        self.scope = scope
        self.telemetry = Telemetry("trellis-host", {"trellis.host_id": host.id, "trellis.lattice": host.lattice},
                                   prometheus=prometheus)
        self.telemetry.gatherers.append(self._gather_children)
        m = self.telemetry.meter
        self.heartbeats = m.create_counter("trellis.host.heartbeats", description="Heartbeats sent")
        self.fetches = m.create_counter("trellis.artifact.fetches",
                                        description="Component artifacts fetched, by source and outcome")
        self.fetch_duration = m.create_histogram("trellis.artifact.fetch.duration", unit="s",
                                                 description="Time to fetch a component artifact")
        m.create_observable_counter("trellis.host.worker_restarts", callbacks=[self._restarts],
                                    description="Worker processes restarted after they died")
        m.create_observable_gauge("trellis.host.capacity", callbacks=[self._capacity],
                                  description="What the host advertises in its heartbeat, by resource")
        m.create_observable_counter("trellis.provider.cpu", unit="s", callbacks=[self._provider_cpu],
                                    description="CPU time of provider processes, by provider and app")
        m.create_observable_gauge("trellis.provider.memory", unit="By", callbacks=[self._provider_memory],
                                  description="Resident memory of provider processes")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._procs: dict[int, psutil.Process] = {}
        #: CPU seconds of provider processes that have exited, per (provider, app): counters never go back
        self._gone_cpu: dict[tuple[str, str], float] = {}
        #: (process, provider) -> (provider, app, its CPU seconds so far); each process's CPU at the last reading
        self._last_cpu: dict[tuple[int, str], tuple[str, str, float]] = {}
        self._process_cpu: dict[int, float] = {}

    def started(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def serve(self, port: int, addr: str) -> tuple[str, int]:
        try:
            return self.telemetry.serve_prometheus(port, addr)
        except OSError as exc:
            raise RuntimeError(f"--metrics-port {port}: cannot listen on {addr}:{port}: "
                               f"{exc.strerror or exc}") from None

    def shutdown(self) -> None:
        self.telemetry.shutdown()

    # -- host instruments ---------------------------------------------------------------

    def heartbeat(self) -> None:
        self.heartbeats.add(1, self._labels())

    def fetched(self, image: str, outcome: str, seconds: float) -> None:
        """A component artifact fetch ended (``outcome``: ok or error)."""
        try:
            source = parse_ref(image).kind
        except ArtifactError:
            source = "invalid"
        labels = {**self._labels(), "source": source, "outcome": outcome}
        self.fetches.add(1, labels)
        self.fetch_duration.record(seconds, {**self._labels(), "source": source})

    def _labels(self) -> dict[str, str]:
        return {"host": self.host.id}

    def _restarts(self, _: CallbackOptions) -> list[Observation]:
        pool = self.host.components.pool
        return [Observation(pool.restarts if pool else 0, self._labels())]

    def _capacity(self, _: CallbackOptions) -> list[Observation]:
        cap = self.host.capacity().model_dump()
        return [Observation(v, {**self._labels(), "resource": k}) for k, v in cap.items()
                if isinstance(v, (int, float))]

    def _provider_processes(self) -> list[tuple[str, str, psutil.Process, int]]:
        """Each provider's process, and how many providers it runs (the host's provider group: its CPU
        and memory are split evenly between them)."""
        out = []
        for pid_name, sup in list(self.host.providers.running.items()):
            proc = sup.proc
            if proc is None or proc.returncode is not None or not self.host.providers.sharing(proc.pid):
                continue  # (sharing 0: in the host's own process, whose figures are the host's)
            p = self._procs.get(proc.pid)
            if p is None:
                try:
                    p = self._procs[proc.pid] = psutil.Process(proc.pid)
                except psutil.Error:
                    continue
            out.append((pid_name, sup.spec.annotations.get(APP_ANNOTATION, ""), p,
                        self.host.providers.sharing(proc.pid)))
        return out

    def _provider_cpu(self, _: CallbackOptions) -> list[Observation]:
        """CPU seconds per provider, monotonic: each process's new CPU time since the last reading is
        split evenly between the providers it runs now (one, or the members of the provider group)."""
        totals = dict(self._gone_cpu)
        seen: set[tuple[int, str]] = set()
        for provider, app, p, share in self._provider_processes():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            cpu = t.user + t.system
            delta = max(0.0, cpu - self._process_cpu.get(p.pid, 0.0)) / share
            seen.add((p.pid, provider))
            had = self._last_cpu.get((p.pid, provider), (provider, app, 0.0))[2]
            self._last_cpu[(p.pid, provider)] = (provider, app, had + delta)
            totals[(provider, app)] = totals.get((provider, app), 0.0) + had + delta
        for pid in {key[0] for key in seen}:
            try:
                t = self._procs[pid].cpu_times()
                self._process_cpu[pid] = t.user + t.system
            except (KeyError, psutil.Error):
                pass
        for key in [key for key in self._last_cpu if key not in seen]:  # exited since: keep what it used
            provider, app, cpu = self._last_cpu.pop(key)
            if not any(k[0] == key[0] for k in seen):
                self._procs.pop(key[0], None)
                self._process_cpu.pop(key[0], None)
            self._gone_cpu[(provider, app)] = self._gone_cpu.get((provider, app), 0.0) + cpu
            totals[(provider, app)] = totals.get((provider, app), 0.0) + cpu
        return [Observation(v, {**self._labels(), "provider": k[0], "app": k[1]}) for k, v in totals.items()]

    def _provider_memory(self, _: CallbackOptions) -> list[Observation]:
        out = []
        for provider, app, p, share in self._provider_processes():
            try:
                out.append(Observation(p.memory_info().rss // share,
                                       {**self._labels(), "provider": provider, "app": app}))
            except psutil.Error:
                continue
        return out

    # -- gathering ----------------------------------------------------------------------

    def _gather_children(self) -> list[Series]:
        """The workers', providers' (and, for scope lattice, controllers') series. Called by the
        Prometheus reader on its own thread; on the event loop's thread (a flush) it gives none."""
        loop = self._loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._loop_thread:
            return []
        fut = asyncio.run_coroutine_threadsafe(self.gather(), loop)
        try:
            return fut.result(GATHER_TIMEOUT_S + 1)
        except Exception as exc:
            fut.cancel()
            log.warning("metrics of workers and providers not gathered: %r", exc)
            return []

    async def gather(self) -> list[Series]:
        parts = await asyncio.gather(self._workers(), self._providers(), self._controllers(),
                                     return_exceptions=True)
        return merge(p for p in parts if isinstance(p, list))

    async def _workers(self) -> list[Series]:
        pool = self.host.components.pool
        if pool is None:
            return []
        lists = await asyncio.wait_for(pool.metrics(), GATHER_TIMEOUT_S)
        return merge(lists)

    async def _providers(self) -> list[Series]:
        nc = self.host.nc
        if nc is None or not self.host.providers.running:
            return []

        async def one(provider_id: str) -> list[Series]:
            try:
                msg = await nc.request(subjects.provider_metrics(self.host.lattice, provider_id, self.host.id),
                                       b"", timeout=GATHER_TIMEOUT_S)
                return list(json.loads(msg.data))
            except Exception:
                return []

        lists = await asyncio.gather(*(one(pid) for pid in list(self.host.providers.running)))
        return merge(lists)

    async def _controllers(self) -> list[Series]:
        nc = self.host.nc
        if self.scope != "lattice" or nc is None:
            return []
        inbox = nc.new_inbox()
        got: list[list[Series]] = []
        sub = await nc.subscribe(inbox)
        try:
            await nc.publish(subjects.wadm_metrics(self.host.lattice), b"", reply=inbox)
            while True:  # every controller answers; a short window after the last
                try:
                    msg = await sub.next_msg(timeout=0.3 if got else 1.0)
                except Exception:
                    break
                try:
                    got.append(list(json.loads(msg.data)))
                except ValueError:
                    continue
        finally:
            await sub.unsubscribe()
        return merge(got)
