"""A wadm controller inside the host's process: `trellis host --with-wadm` (what `trellis up` runs).

An embedded lattice on one machine ran its controller as a process of its own: a second Python
interpreter with the same libraries (nats-py, pydantic, OpenTelemetry, the interfaces), ~40 MiB
of PSS for a controller that is idle nearly all the time. Here it runs on the host's event loop
instead: the same :class:`~trellis.wadm.controller.Controller`, its own NATS connection, lease,
API and metrics, so the lattice sees the same controller (``trellis wadm status``), and one
process fewer holds the libraries (docs/performance.md, "Peak memory of the full app under load").

What a separate process gave, kept here: a controller that fails (a fatal error closes it) is
started again with backoff, as `trellis up` restarts a child, without touching the host; its
log lines go to ``wadm.log`` with ``--log-to files`` (``logs/host.log`` otherwise, under the
``trellis.wadm`` logger). What it cannot keep: a crash of the whole process takes both.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trellis.wadm.controller import Controller, ControllerSettings

log = logging.getLogger("trellis.wadm.embedded")

#: the longest wait before the controller is started again after a failure
MAX_BACKOFF_S = 30.0


class EmbeddedWadm:
    """Runs a wadm controller on this loop until :meth:`stop`, starting it again after failures."""

    def __init__(self, settings: ControllerSettings,
                 factory: Callable[[ControllerSettings], Controller] | None = None) -> None:
        self.settings = settings
        self._factory = factory
        self.controller: Controller | None = None
        self.starts = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _new(self) -> Controller:
        if self._factory is not None:
            return self._factory(self.settings)
        from trellis.wadm.controller import Controller

        return Controller(self.settings)

    def start(self) -> None:
        """Start the controller in the background (the host's loop: call from it)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="embedded-wadm")

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            controller = self.controller = self._new()
            self.starts += 1
            try:
                await controller.start()
            except Exception as exc:  # e.g. JetStream not ready yet: as a restarted process would, again
                log.warning("the embedded wadm controller could not start: %s", exc)
            else:
                failures = 0
                log.info("wadm controller %s runs in the host's process", controller.id)
                stop = asyncio.ensure_future(self._stopping.wait())
                done = asyncio.ensure_future(controller.finished())
                await asyncio.wait([stop, done], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                done.cancel()
                if self._stopping.is_set():
                    break
                log.warning("the embedded wadm controller stopped (%s); starting it again", controller.close_reason)
            failures += 1
            backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** min(failures - 1, 6))
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except TimeoutError:
                pass

    async def stop(self, reason: str) -> None:
        """Stop the controller (it gives up its lease) and stop restarting it."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.controller is not None:
            await self.controller.close(reason=reason)


def log_to_own_file(log_dir: Path, fmt: str) -> None:
    """``--log-to files``: the controller's lines in ``log_dir/wadm.log``, as its own process wrote them."""
    from trellis.interfaces.logs import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, TEXT_FORMAT, JsonFormatter, _int_env

    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / "wadm.log", maxBytes=_int_env("TRELLIS_LOG_MAX_BYTES", DEFAULT_MAX_BYTES),
        backupCount=_int_env("TRELLIS_LOG_BACKUPS", DEFAULT_BACKUPS), encoding="utf-8")
    handler.setFormatter(JsonFormatter("wadm") if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    wadm = logging.getLogger("trellis.wadm")
    wadm.addHandler(handler)
    wadm.propagate = False
