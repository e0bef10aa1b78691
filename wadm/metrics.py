"""A wadm controller's metrics and traces: reconcile passes, their duration, the commands they sent.

Every pass is counted (by app and whether it sent commands) and timed, and is a span
(``wadm reconcile APP``) when tracing is configured; every command by kind and outcome.
The controller answers ``trellis.<lattice>.wadm.metrics`` with its series list (JSON), so
``trellis up --metrics-port`` serves them with the host's; over OTLP it exports its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from opentelemetry.metrics import CallbackOptions, Observation

from trellis.interfaces import tracing
from trellis.kit.meters import Telemetry

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)


class WadmMetrics:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.telemetry = Telemetry("trellis-wadm", {"trellis.lattice": ctl.lattice, "trellis.wadm_id": ctl.id})
        m = self.telemetry.meter
        self.passes = m.create_counter("trellis.wadm.reconcile.passes", description="Reconcile passes, by app "
                                       "and whether they sent commands")
        self.duration = m.create_histogram("trellis.wadm.reconcile.duration", unit="s",
                                           description="Time a reconcile pass took (planning and commands)")
        self.commands = m.create_counter("trellis.wadm.commands", description="Commands sent, by kind and outcome")
        m.create_observable_gauge("trellis.wadm.leader", callbacks=[self._leader],
                                  description="1 while this controller holds the lease and acts, else 0")
        m.create_observable_gauge("trellis.wadm.apps", callbacks=[self._apps],
                                  description="Applications this controller knows, by deployed or not")

    def _labels(self) -> dict[str, str]:
        return {"controller": self.ctl.id}

    def _leader(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(1 if self.ctl.role.value == "leader" else 0, self._labels())]

    def _apps(self, _: CallbackOptions) -> list[Observation]:
        deployed = sum(1 for r in self.ctl.records.values() if r.deployed_version is not None)
        return [Observation(deployed, {**self._labels(), "deployed": "true"}),
                Observation(len(self.ctl.records) - deployed, {**self._labels(), "deployed": "false"})]

    @contextlib.contextmanager
    def reconcile(self, app: str, pass_id: str) -> Iterator[dict[str, Any]]:
        """Around one pass: yields a dict the pass fills with ``applied`` and ``failed`` commands."""
        outcome: dict[str, Any] = {"applied": [], "failed": []}
        began = time.perf_counter()
        span = (tracing.tracer().start_as_current_span(f"wadm reconcile {app}", attributes={
            "trellis.app": app, "trellis.pass_id": pass_id}) if tracing.enabled() else contextlib.nullcontext())
        with span:
            yield outcome
        labels = {**self._labels(), "app": app}
        sent = bool(outcome["applied"] or outcome["failed"])
        self.passes.add(1, {**labels, "commands": "yes" if sent else "no"})
        self.duration.record(time.perf_counter() - began, labels)
        for command in outcome["applied"]:
            self.commands.add(1, {**labels, "kind": type(command).__name__, "outcome": "ok"})
        for command, _why in outcome["failed"]:
            self.commands.add(1, {**labels, "kind": type(command).__name__, "outcome": "failed"})

    async def on_scrape(self, msg: Msg) -> None:
        if msg.reply:
            try:
                await msg.respond(json.dumps(self.telemetry.snapshot()).encode())
            except Exception as exc:
                log.debug("metrics reply lost: %r", exc)
