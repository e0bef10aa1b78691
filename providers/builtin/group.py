"""One process for a host's built-in providers: ``python -P -m trellis.providers.builtin.group``.

Run alone, each built-in provider is a Python process of its own, ~28 MiB of private memory
of which nearly all is the interpreter and the libraries every provider imports (nats-py,
pydantic, OpenTelemetry, the SDK); the orders app's host ran four. A host runs its built-in
providers in one such process instead (``host/provider_group.py``; ``TRELLIS_PROVIDER_GROUP=0``
turns it off): each is its own :class:`~trellis.providers.sdk.ProviderRuntime`, with its own
NATS connection, subscriptions, same-host door, links, config and state, on one event loop.
They share the process's fate: when it dies, the host restarts each of them.

The host and the group speak JSON lines. On stdin, from the host:

* ``{"op": "start", "id": ID, "module": "trellis.providers.builtin.NAME", "bootstrap": {...}}``
* ``{"op": "stop", "id": ID}``: closed as SIGTERM closes a provider process (calls under way answered)
* ``{"op": "kill", "id": ID}``: dropped at once, as SIGKILL would

On stdout, to the host: ``{"event": "exited", "id": ID, "code": N}`` once each provider has
stopped: 0 when it was closed, 1 when it could not start, 2 for a bad bootstrap or module, -9
when killed. The process ends when its stdin closes (its host is gone) or on SIGTERM, after
closing every provider it runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path
from typing import Any

from trellis.interfaces import tracing
from trellis.interfaces.logs import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, TEXT_FORMAT, JsonFormatter, choice, destination
from trellis.kit import gc_tuning
from trellis.kit.service import TaskGroup
from trellis.providers.sdk import Bootstrap, BootstrapError, ProviderRuntime

log = logging.getLogger(__name__)

MODULE_PREFIX = "trellis.providers.builtin."
EXIT_OK, EXIT_START_FAILED, EXIT_BAD_BOOTSTRAP, EXIT_KILLED = 0, 1, 2, -9
#: the provider whose task (and the tasks it starts) logs a record
CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("trellis_provider_group_member")


class PerProvider(logging.Handler):
    """Each provider's records where its own process would have written them: ``logs/provider-ID.log``
    (what its host captured from its stderr; rotating with ``TRELLIS_LOG_TO=files``), or standard
    error (``TRELLIS_LOG_TO=stdout``: the host passes the group's to its standard output). Records of
    no provider go to standard error (the host's ``logs/provider-group.log``)."""

    def __init__(self, log_dir: Path | None) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.fmt = choice(None, "TRELLIS_LOG_FORMAT", ("text", "json"), "text")
        self.to = destination()
        self.handlers: dict[str, logging.Handler] = {}
        self.fallback = self._handler("provider-group", stderr=True)

    def _handler(self, process: str, stderr: bool = False) -> logging.Handler:
        handler: logging.Handler
        if stderr or self.log_dir is None or self.to == "stdout":
            handler = logging.StreamHandler(sys.stderr)
        elif self.to == "files":
            handler = logging.handlers.RotatingFileHandler(
                self.log_dir / f"{process}.log",
                maxBytes=int(os.environ.get("TRELLIS_LOG_MAX_BYTES", DEFAULT_MAX_BYTES)),
                backupCount=int(os.environ.get("TRELLIS_LOG_BACKUPS", DEFAULT_BACKUPS)), encoding="utf-8")
        else:
            handler = logging.FileHandler(self.log_dir / f"{process}.log", encoding="utf-8")
        handler.setFormatter(JsonFormatter(process) if self.fmt == "json" else logging.Formatter(TEXT_FORMAT))
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        pid = CURRENT.get(None)
        if pid is None:
            self.fallback.handle(record)
            return
        handler = self.handlers.get(pid)
        if handler is None:
            handler = self.handlers[pid] = self._handler(f"provider-{pid}")
        handler.handle(record)

    def forget(self, pid: str) -> None:
        handler = self.handlers.pop(pid, None)
        if handler is not None:
            handler.close()


class Group:
    """The providers of one group process, by provider id."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.tasks = TaskGroup("provider-group")
        self._members: dict[str, asyncio.Task[None]] = {}
        self.logs: PerProvider | None = None

    def _emit(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def handle(self, msg: dict[str, Any]) -> None:
        op, pid = msg.get("op"), str(msg.get("id", ""))
        if op == "start" and pid and pid not in self._members:
            self._members[pid] = self.tasks.spawn(self._run(pid, str(msg.get("module", "")), msg.get("bootstrap")),
                                                  f"provider-{pid}")
        elif op == "stop" and pid in self.runtimes:
            self.tasks.spawn(self.runtimes[pid].close(reason="stopped by its host"), f"stop-{pid}")
        elif op == "kill" and pid in self._members:
            self._members[pid].cancel()
        elif op not in ("start", "stop", "kill"):
            log.warning("provider group: unknown message %r", msg)

    async def _run(self, pid: str, module: str, raw: Any) -> None:
        CURRENT.set(pid)  # this task's context, and that of every task its provider starts
        code = EXIT_BAD_BOOTSTRAP
        try:
            try:
                if not module.startswith(MODULE_PREFIX):
                    raise BootstrapError(f"{module!r} is not a built-in provider")
                bootstrap = Bootstrap.parse(raw if isinstance(raw, dict) else {})
                provider = importlib.import_module(module).build()
            except (BootstrapError, ImportError, AttributeError, ValueError) as exc:
                print(f"error: provider {pid}: {exc}", file=sys.stderr, flush=True)
                return
            self._setup_once(bootstrap)
            runtime = ProviderRuntime(provider, bootstrap)
            self.runtimes[pid] = runtime
            try:
                await runtime.start()
            except Exception as exc:
                log.error("error: provider %s could not start: %s", pid, exc)
                code = EXIT_START_FAILED
                return
            await runtime.finished()
            code = EXIT_OK
        except asyncio.CancelledError:
            code = EXIT_KILLED
            runtime_ = self.runtimes.get(pid)
            if runtime_ is not None and runtime_.nc is not None and not runtime_.nc.is_closed:
                await asyncio.shield(runtime_.nc.close())  # its subscriptions go with it
        finally:
            self.runtimes.pop(pid, None)
            self._members.pop(pid, None)
            if self.logs is not None:
                self.logs.forget(pid)
            self._emit({"event": "exited", "id": pid, "code": code})

    def _setup_once(self, bootstrap: Bootstrap) -> None:
        """Logging, tracing and the collector: the first provider's settings, for the whole process."""
        if self.logs is not None:
            return
        log_dir = Path(bootstrap.state_dir) / "logs" if bootstrap.state_dir else None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = PerProvider(log_dir)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(self.logs)
        root.setLevel(bootstrap.log_level.upper())
        tracing.setup_tracing("provider-group")
        gc_tuning.tune(bootstrap.gc_threshold)

    async def close(self) -> None:
        await asyncio.gather(*(r.close(reason="its group is closing") for r in list(self.runtimes.values())),
                             return_exceptions=True)
        await asyncio.gather(*list(self._members.values()), return_exceptions=True)
        await self.tasks.close()


async def serve() -> int:
    loop = asyncio.get_running_loop()
    group = Group(sys.stdout)
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def read() -> None:
        while line := await reader.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("provider group: a line that is not JSON was ignored")
                continue
            if isinstance(msg, dict):
                group.handle(msg)
        done.set()  # stdin closed: the host is gone

    reading = loop.create_task(read())
    await done.wait()
    reading.cancel()
    await group.close()
    return 0


def main() -> int:
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()
    try:
        import uvloop

        return uvloop.run(serve())
    except ImportError:  # pragma: no cover
        return asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
