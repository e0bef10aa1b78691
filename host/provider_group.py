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
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import IO, Any

from trellis.kit.procs import death_signal
from trellis.kit.service import TaskGroup

log = logging.getLogger(__name__)

GROUP_MODULE = "trellis.providers.builtin.group"
BUILTIN_PREFIX = "trellis.providers.builtin."


def builtin_module(argv: list[str]) -> str | None:
    """The built-in provider module ``argv`` runs (``python -P -m trellis.providers.builtin.NAME``), else None."""
    if len(argv) == 4 and argv[0] == sys.executable and argv[1:3] == ["-P", "-m"] \
            and argv[3].startswith(BUILTIN_PREFIX) and argv[3] != GROUP_MODULE:
        return argv[3]
    return None


class GroupMember:
    """One provider in the group, as its supervisor sees a provider process."""

    def __init__(self, group: ProviderGroup, proc: asyncio.subprocess.Process, provider_id: str) -> None:
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
        if self.returncode is None and self.proc.returncode is None:
            log.warning("provider %s was not dropped by its group within 5 s: killing the group process %d",
                        self.provider_id, self.proc.pid)
            self.proc.kill()


class ProviderGroup:
    """Starts the group process on demand, passes each member's start and stop, reads their exits."""

    def __init__(self, tasks: TaskGroup, log_dir: Path) -> None:
        self.tasks = tasks
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.members: dict[str, GroupMember] = {}
        self._spawning = asyncio.Lock()

    async def start(self, provider_id: str, module: str, bootstrap: bytes, env: dict[str, str]) -> GroupMember:
        """``module`` with ``bootstrap`` in the group (started first if none runs). ``env``: the providers'
        clean environment; each provider's log is ``logs/provider-ID.log`` as with a process of its own."""
        async with self._spawning:
            proc = self.proc
            if proc is None or proc.returncode is not None:
                proc = self.proc = await self._spawn(env)
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

    def send(self, proc: asyncio.subprocess.Process, msg: dict[str, Any]) -> None:
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
                    self._exited(proc, str(event.get("id")), int(event.get("code", -1)))
        finally:
            code = await proc.wait()
            if code != 0:
                log.warning("the provider group process %d exited with %s (see %s)", proc.pid, code,
                            self.log_dir / "provider-group.log")
            for pid in [p for p, m in self.members.items() if m.proc is proc]:
                self._exited(proc, pid, code if code != 0 else -9)

    def _exited(self, proc: asyncio.subprocess.Process, provider_id: str, code: int) -> None:
        member = self.members.get(provider_id)
        if member is None or member.proc is not proc:
            return
        del self.members[provider_id]
        member.exited(code)
        if not any(m.proc is proc for m in self.members.values()) and proc.stdin is not None:
            if self.proc is proc:
                self.proc = None  # the last one went: the process ends (a new provider starts another)
            proc.stdin.close()

    def shared(self, pid: int) -> int:
        """How many providers run in process ``pid`` (1 for a provider's own process)."""
        return max(1, sum(1 for m in self.members.values() if m.proc.pid == pid))

    async def close(self, grace_s: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
