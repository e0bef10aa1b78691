"""The host's one process for its built-in providers (``trellis/providers/builtin/group.py``).

A built-in provider (``builtin:NAME``) runs in this shared process instead of a process of its
own: ~28 MiB of private memory saved per built-in provider after the first (the orders app's
host runs four). Its supervisor (``providers.py``) sees a :class:`GroupMember`, which behaves
like the provider's process: ``pid`` (the group's), ``returncode``, ``wait()``,
``send_signal(SIGTERM)`` (closed as SIGTERM would: calls under way answered) and ``kill()``.
So health checks, restarts with backoff and the stop ladder are the same; what changes is the
fate they share: when the group process dies, each of its providers is restarted (into a new
group). The process starts with the first built-in provider and ends with the last.
``TRELLIS_PROVIDER_GROUP=0`` (``tuning.process.provider_group``) runs each in its own process.

**In the host's process.** Given a :data:`RunnerFactory` (``trellis host`` passes the group's
``in_host``: this layer does not import the built-in providers), the same group runs on the
host's own event loop instead of a process: one Python interpreter fewer (~32 MiB of PSS),
what wadm's controller already does for `trellis up`. ``TRELLIS_PROVIDERS_IN_HOST=0``
(``tuning.process.providers_in_host``) keeps the process. The members look the same to
their supervisor (``pid`` is the host's own), with the same exits, health checks, restarts
with backoff and stop ladder; what a process gave and this cannot: a provider that crashes
the interpreter takes the host with it, and a member that ignores ``kill`` for 5 s is given up
(reported exited; its task left to end) rather than killed with its process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from trellis.kit.procs import death_signal
from trellis.kit.service import TaskGroup

log = logging.getLogger(__name__)

GROUP_MODULE = "trellis.providers.builtin.group"
BUILTIN_PREFIX = "trellis.providers.builtin."


class Runner(Protocol):
    """The group run in this process (``trellis.providers.builtin.group.Group``): the messages
    of the group process's stdin, ``{"event": "exited", ...}`` through the factory's callback."""

    def handle(self, msg: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


#: makes the in-process group: (exit events' callback, the providers' TRELLIS_LOG_* variables) -> Runner
RunnerFactory = Callable[[Callable[[dict[str, Any]], None], dict[str, str]], Runner]


class InHost:
    """Stands in for the group's process when the group runs in the host's process."""

    returncode: int | None = None

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.pid = os.getpid()


def builtin_module(argv: list[str]) -> str | None:
    """The built-in provider module ``argv`` runs (``python -P -m trellis.providers.builtin.NAME``), else None."""
    if len(argv) == 4 and argv[0] == sys.executable and argv[1:3] == ["-P", "-m"] \
            and argv[3].startswith(BUILTIN_PREFIX) and argv[3] != GROUP_MODULE:
        return argv[3]
    return None


class GroupMember:
    """One provider in the group, as its supervisor sees a provider process."""

    def __init__(self, group: ProviderGroup, proc: asyncio.subprocess.Process | InHost, provider_id: str) -> None:
        self.group = group
        self.proc = proc
        self.provider_id = provider_id
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.provider_id)
        self.group.send(self.proc, {"op": "kill" if sig == signal.SIGKILL else "stop", "id": self.provider_id})

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        # a group that does not drop it within 5 s is stuck: it goes, with its other providers
        asyncio.get_running_loop().call_later(5.0, self._force)

    def _force(self) -> None:
        proc = self.proc
        if self.returncode is not None:
            return
        if isinstance(proc, InHost):
            log.warning("provider %s did not stop within 5 s of being killed: given up", self.provider_id)
            self.group.gone(proc, self.provider_id, -9)
        elif proc.returncode is None:
            log.warning("provider %s was not dropped by its group within 5 s: killing the group process %d",
                        self.provider_id, proc.pid)
            proc.kill()


class ProviderGroup:
    """Starts the group process on demand, passes each member's start and stop, reads their exits."""

    def __init__(self, tasks: TaskGroup, log_dir: Path, here: RunnerFactory | None = None,
                 log_env: dict[str, str] | None = None) -> None:
        self.tasks = tasks
        self.log_dir = log_dir
        #: the group in this process (None: its own process)
        self.here = here
        self.log_env = log_env or {}
        self.proc: asyncio.subprocess.Process | InHost | None = None
        self.members: dict[str, GroupMember] = {}
        self._spawning = asyncio.Lock()

    async def start(self, provider_id: str, module: str, bootstrap: bytes, env: dict[str, str]) -> GroupMember:
        """``module`` with ``bootstrap`` in the group (started first if none runs). ``env``: the providers'
        clean environment; each provider's log is ``logs/provider-ID.log`` as with a process of its own."""
        async with self._spawning:
            proc = self.proc
            if proc is None or proc.returncode is not None:
                proc = self.proc = self._in_host() if self.here is not None else await self._spawn(env)
        member = self.members[provider_id] = GroupMember(self, proc, provider_id)
        self.send(proc, {"op": "start", "id": provider_id, "module": module, "bootstrap": json.loads(bootstrap)})
        return member

    async def _spawn(self, env: dict[str, str]) -> asyncio.subprocess.Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # TRELLIS_LOG_TO=stdout: its providers' logs on the host's standard output
        to_stdout = env.get("TRELLIS_LOG_TO") == "stdout"
        out: IO[bytes] | IO[str] = (
            sys.stdout if to_stdout
            else open(self.log_dir / "provider-group.log", "ab"))  # noqa: SIM115 (closed below, the child has it)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", GROUP_MODULE, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=out, env=env, limit=16 * 1024 * 1024,
                start_new_session=True, preexec_fn=death_signal())
        finally:
            if not to_stdout:
                out.close()
        self.tasks.spawn(self._read(proc), f"provider-group-{proc.pid}")
        return proc

    def _in_host(self) -> InHost:
        assert self.here is not None
        here: InHost | None = None

        def on_event(event: dict[str, Any]) -> None:
            if here is not None and event.get("event") == "exited":
                self.gone(here, str(event.get("id")), int(event.get("code", -1)))

        here = InHost(self.here(on_event, self.log_env))
        return here

    def send(self, proc: asyncio.subprocess.Process | InHost, msg: dict[str, Any]) -> None:
        if isinstance(proc, InHost):
            proc.runner.handle(msg)
            return
        if proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
            raise ProcessLookupError(proc.pid)
        proc.stdin.write(json.dumps(msg).encode() + b"\n")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "exited":
                    self.gone(proc, str(event.get("id")), int(event.get("code", -1)))
        finally:
            code = await proc.wait()
            if code != 0:
                log.warning("the provider group process %d exited with %s (see %s)", proc.pid, code,
                            self.log_dir / "provider-group.log")
            for pid in [p for p, m in self.members.items() if m.proc is proc]:
                self.gone(proc, pid, code if code != 0 else -9)

    def gone(self, proc: asyncio.subprocess.Process | InHost, provider_id: str, code: int) -> None:
        """Member ``provider_id`` of ``proc`` has exited with ``code``."""
        member = self.members.get(provider_id)
        if member is None or member.proc is not proc:
            return
        del self.members[provider_id]
        member.exited(code)
        if isinstance(proc, InHost):
            return  # the group stays on this loop, empty, until the host closes
        if not any(m.proc is proc for m in self.members.values()) and proc.stdin is not None:
            if self.proc is proc:
                self.proc = None  # the last one went: the process ends (a new provider starts another)
            proc.stdin.close()

    def shared(self, pid: int) -> int:
        """How many providers run in process ``pid`` (1 for a provider's own process; 0 for the
        host's own: its CPU and memory are the host's, not theirs)."""
        if pid == os.getpid():
            return 0
        return max(1, sum(1 for m in self.members.values() if m.proc.pid == pid))

    async def close(self, grace_s: float) -> None:
        proc = self.proc
        if isinstance(proc, InHost):
            self.proc = None
            try:
                await asyncio.wait_for(proc.runner.close(), grace_s)
            except TimeoutError:
                log.warning("the providers in the host's process did not close within %.0f s", grace_s)
            return
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
