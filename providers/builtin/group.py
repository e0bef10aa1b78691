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

:func:`in_host` runs the same :class:`Group` in the host's own process instead (what `trellis
host` does by default, ``TRELLIS_PROVIDERS_IN_HOST=0`` for the process above): the same
messages, the same exit events through a callback, one process fewer (~32 MiB of PSS). The
host's logging is left as it is; each provider's records still go to ``logs/provider-ID.log``.
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
from collections.abc import Callable
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

    def __init__(self, log_dir: Path | None, fmt: str | None = None, to: str | None = None,
                 fallback: bool = True) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.fmt = choice(fmt, "TRELLIS_LOG_FORMAT", ("text", "json"), "text")
        self.to = destination(to)
        self.handlers: dict[str, logging.Handler] = {}
        #: records of no provider (None: not this handler's, in the host's process)
        self.fallback = self._handler("provider-group", stderr=True) if fallback else None

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
            if self.fallback is not None:
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

    def close(self) -> None:
        for pid in list(self.handlers):
            self.forget(pid)
        super().close()


def _not_a_provider_record(record: logging.LogRecord) -> bool:
    return CURRENT.get(None) is None


class Group:
    """The providers of one group, by provider id: each exit is passed to ``emit``. ``log_env``
    (``TRELLIS_LOG_*`` as the host was asked) is given when the group runs in the host's process:
    its logging is the host's, and only the providers' records are sent to their own files."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], log_env: dict[str, str] | None = None) -> None:
        self._emit = emit
        self.embedded = log_env is not None
        self.log_env = log_env or {}
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.tasks = TaskGroup("provider-group")
        self._members: dict[str, asyncio.Task[None]] = {}
        self.logs: PerProvider | None = None

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
                # imported off the host's loop (which serves every provider, the lease and NATS): a
                # first import reads and runs modules, ~0.6 s of a loaded machine's time
                imported = sys.modules.get(module)
                if imported is None:
                    imported = await asyncio.to_thread(importlib.import_module, module)
                provider = imported.build()
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
            if runtime_ is not None and self.embedded:
                # no process to take its sockets and listeners with it: closed now, calls under way unanswered
                runtime_.bootstrap.shutdown_grace_s = 0.0
                try:
                    await asyncio.shield(runtime_.close(reason="killed by its host"))
                except Exception as exc:
                    log.warning("provider %s: closing it after a kill: %r", pid, exc)
            elif runtime_ is not None and runtime_.nc is not None and not runtime_.nc.is_closed:
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
        if self.embedded:
            self._log_in_host(log_dir)
            return
        self.logs = PerProvider(log_dir)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(self.logs)
        root.setLevel(bootstrap.log_level.upper())
        tracing.setup_tracing("provider-group")
        gc_tuning.tune(bootstrap.gc_threshold)

    def _log_in_host(self, log_dir: Path | None) -> None:
        """In the host's process: each provider's records to ``logs/provider-ID.log`` (as from a group
        process), not to the host's log; with ``TRELLIS_LOG_TO=stdout`` all go where the host's go."""
        fmt, to = self.log_env.get("TRELLIS_LOG_FORMAT"), self.log_env.get("TRELLIS_LOG_TO")
        logs = PerProvider(log_dir, fmt=fmt, to=to, fallback=False)
        if logs.to == "stdout" or log_dir is None:
            return
        self.logs = logs
        root = logging.getLogger()
        for handler in root.handlers:
            handler.addFilter(_not_a_provider_record)
        root.addHandler(logs)

    async def close(self) -> None:
        await asyncio.gather(*(r.close(reason="its group is closing") for r in list(self.runtimes.values())),
                             return_exceptions=True)
        await asyncio.gather(*list(self._members.values()), return_exceptions=True)
        await self.tasks.close()
        if self.embedded and self.logs is not None:
            root = logging.getLogger()
            root.removeHandler(self.logs)
            for handler in root.handlers:
                handler.removeFilter(_not_a_provider_record)
            self.logs.close()
            self.logs = None


def in_host(emit: Callable[[dict[str, Any]], None], log_env: dict[str, str]) -> Group:
    """The group in the calling (host's) process: ``trellis host`` passes this to its host
    (``host/provider_group.py``, ``RunnerFactory``)."""
    return Group(emit, log_env)


def _stdout_event(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def serve() -> int:
    loop = asyncio.get_running_loop()
    group = Group(_stdout_event)
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
