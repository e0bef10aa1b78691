"""Provider processes on one host, supervised the way a nanny supervises workers.

Each provider runs as its own process with a clean environment; the host
writes its bootstrap (lattice, NATS connection, identity, config, links) to the
process's stdin, checks its health periodically, restarts it with backoff when
it dies, and stops it along the ladder SIGTERM → grace period → SIGKILL.
Events: ``provider_started`` (first healthy answer), ``provider_start_failed``,
``provider_stopped``, ``health_check_passed`` / ``health_check_failed``
(on changes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trellis.interfaces import subjects
from trellis.interfaces.artifacts import fetch_lattice, parse_ref
from trellis.interfaces.control import (
    CtlReply,
    ProviderDescription,
    ProviderOp,
    StartProviderCommand,
    StopProviderCommand,
)
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.events import EventType
from trellis.interfaces.policy import claims_body
from trellis.interfaces.provider_package import unpack
from trellis.interfaces.secrets import SecretsUnavailable
from trellis.kit.procs import death_signal, supervised_env

from .provider_group import GroupMember, ProviderGroup, RunnerFactory, builtin_module
from .provider_refs import ProviderCommand, prepared_command, provider_command

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger(__name__)


def loop_time() -> float:
    return asyncio.get_running_loop().time()

_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TRELLIS_LOG_LEVEL", "TRELLIS_LOG_FORMAT", "TRELLIS_LOG_TO",
             "TRELLIS_LOG_MAX_BYTES", "TRELLIS_LOG_BACKUPS", "TRELLIS_METRICS", "PYTHONPATH", "VIRTUAL_ENV")


def clean_env() -> dict[str, str]:
    """What a provider process sees: no secrets from the host's environment."""
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV or k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Supervised:
    spec: StartProviderCommand
    argv: list[str]
    pythonpath: list[str] = field(default_factory=list)
    #: its own process, or its place in the host's provider group (``provider_group.py``)
    proc: asyncio.subprocess.Process | GroupMember | None = None
    status: str = "starting"  # starting | running | unhealthy | restarting | stopping | failed
    healthy: bool | None = None
    health_message: str = ""
    local_state: bool = False
    """The provider declared (in its health answers) that its data lives on this host."""
    restarts: int = 0
    backoff_step: int = 0
    started_once: bool = False
    stopping: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class ProviderManager:
    health_interval_s = 2.0
    stable_after_s = 60.0  # a provider that ran this long before crashing restarts without delay build-up
    start_timeout_s = 30.0
    stop_grace_s = 10.0

    def __init__(self, host: Host, here: RunnerFactory | None = None) -> None:
        """``here``: how to run the built-in providers' group in this process (``trellis host`` gives it)."""
        self.host = host
        self.running: dict[str, Supervised] = {}
        #: the one process of this host's built-in providers (None: each its own; TRELLIS_PROVIDER_GROUP=0)
        tuning = host.settings.tuning.process
        self.group = (ProviderGroup(host.tasks, host.settings.state_dir / "logs",
                                    here if tuning.providers_in_host else None, host.log_env())
                      if tuning.provider_group else None)
        host.router.add("provider", ProviderOp.START, StartProviderCommand, self._op_start,
                        privileged=False)  # asked below
        host.router.add("provider", ProviderOp.STOP, StopProviderCommand, self._op_stop)

    def describe(self) -> list[ProviderDescription]:
        return [ProviderDescription(id=pid, image=s.spec.image, annotations=s.spec.annotations, status=s.status,
                                    health_message=s.health_message, local_state=s.local_state)
                for pid, s in sorted(self.running.items())]

    async def _event(self, event_type: str, sup: Supervised, **extra: Any) -> None:
        await self.host.publish_event(event_type, {
            "host_id": self.host.id, "provider_id": sup.spec.provider_id, "image": sup.spec.image,
            "annotations": sup.spec.annotations, "local_state": sup.local_state, **extra})

    # --- control ---------------------------------------------------------------------

    async def _op_start(self, req: StartProviderCommand) -> dict[str, Any]:
        current = self.running.get(req.provider_id)
        if current is not None and current.spec.image == req.image:
            return {"accepted": True, "host_id": self.host.id, "provider_id": req.provider_id,
                    "already_running": True}
        cmd = await self._command(req)  # a bad reference, or an artifact that cannot be had, is refused at once
        cmd, claims = await self._admit(req.provider_id, req.image, cmd)  # and an untrusted one
        await self.host.policy.require("startProvider", {
            "providerId": req.provider_id, "providerRef": req.image, "annotations": req.annotations,
            "config": req.config, "claims": claims_body(claims),
        }, f"provider {req.provider_id}")
        current = self.running.get(req.provider_id)  # (looked at again after the checks' awaits)
        if current is not None:
            if current.spec.image == req.image:
                return {"accepted": True, "host_id": self.host.id, "provider_id": req.provider_id,
                        "already_running": True}
            raise TrellisError(f"provider {req.provider_id} already runs {current.spec.image} on this host",
                               ErrorCode.CONFLICT)
        sup = Supervised(spec=req, argv=cmd.argv, pythonpath=cmd.pythonpath)
        self.running[req.provider_id] = sup
        self.host.tasks.spawn(self._supervise(sup), f"provider-{req.provider_id}")
        return {"accepted": True, "host_id": self.host.id, "provider_id": req.provider_id}

    async def _op_stop(self, req: StopProviderCommand) -> CtlReply:
        sup = self.running.get(req.provider_id)
        if sup is None:
            raise TrellisError(f"provider {req.provider_id} is not running on this host", ErrorCode.NOT_FOUND)
        grace = self.stop_grace_s if req.timeout_s is None else req.timeout_s
        self.host.tasks.spawn(self._stop(sup, grace), f"provider-stop-{req.provider_id}")
        return CtlReply.ok({"host_id": self.host.id, "provider_id": req.provider_id}, message="stopping")

    # --- supervision -----------------------------------------------------------------

    async def _bootstrap(self, sup: Supervised) -> bytes:
        s = self.host.settings
        boot: dict[str, Any] = {
            "version": 1, "lattice": self.host.lattice, "provider_id": sup.spec.provider_id,
            "host_id": self.host.id, "nats": s.nats.to_dict(), "config": sup.spec.inline_config,
            "config_names": sup.spec.config, "state_dir": str(s.state_dir),
            "local_workers": self.host.components.worker_addresses(),
            "gc_threshold": s.tuning.process.gc_threshold,
        }
        if sup.spec.secrets_grant is not None:  # fetched at every (re)start: a rotated secret is picked up
            boot["secrets"] = await self.host.fetch_secrets(sup.spec.secrets_grant)
        return json.dumps(boot).encode()

    def _who(self) -> str:
        return f"host {self.host.friendly_name}"

    async def _command(self, req: StartProviderCommand) -> ProviderCommand:
        """How ``req.image`` runs here; a ``lattice://`` provider is fetched and unpacked first (once per digest)."""
        if not req.image.strip().startswith("lattice://"):
            return provider_command(req.image, self._who())
        ref = parse_ref(req.image)
        assert self.host.nc is not None and ref.digest is not None
        try:
            data = await fetch_lattice(self.host.nc, self.host.lattice, ref.digest)
            prepared = await asyncio.to_thread(unpack, data, ref.location, self.host.settings.state_dir / "providers")
        except (TrellisError, OSError) as exc:
            raise TrellisError(f"{self._who()} cannot fetch provider {req.image}: {exc}",
                               getattr(exc, "code", ErrorCode.INTERNAL)) from None
        return prepared_command(prepared)

    async def _admit(self, provider_id: str, image: str, cmd: ProviderCommand) -> tuple[ProviderCommand, Any]:
        """``cmd`` (perhaps now run from a checked copy) and its claims, once it passes the host's checks
        (signatures, allowed modules)."""
        if cmd.pythonpath and cmd.argv[-2:-1] == ["-m"]:
            return await self.host.admission.provider_folder(provider_id, cmd)
        argv, claims = await self.host.admission.provider_argv(provider_id, image, cmd.argv)
        return ProviderCommand(argv, cmd.pythonpath), claims

    def _env(self, sup: Supervised, log_env: dict[str, str]) -> dict[str, str]:
        env = supervised_env({**clean_env(), **log_env})
        if sup.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*sup.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
        return env

    async def _spawn(self, sup: Supervised) -> None:
        log_dir = self.host.settings.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        boot = await self._bootstrap(sup)  # before the process: a refused secret starts nothing
        log_env = self.host.log_env()
        module = builtin_module(sup.argv) if self.group is not None and not sup.pythonpath else None
        if self.group is not None and module is not None:
            sup.proc = await self.group.start(sup.spec.provider_id, module, boot, self._env(sup, log_env))
            sup.exited = asyncio.Event()
            return
        to = log_env.get("TRELLIS_LOG_TO")
        out: Any = None  # stdout: the provider writes to the host's stdout
        if to != "stdout":  # files: it writes (and rotates) provider-ID.log itself; crash output here
            out = open(  # noqa: SIM115 (or stdout; closed below once the child has it)
                log_dir / f"provider-{sup.spec.provider_id}{'.stderr' if to == 'files' else ''}.log", "ab")
        try:
            # its own session (a Ctrl-C at the host's terminal is the host's to handle), but it
            # dies with the host: a SIGKILLed host must not leave it serving calls as an orphan
            sup.proc = await asyncio.create_subprocess_exec(
                *sup.argv, stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out, env=self._env(sup, log_env),
                start_new_session=True, preexec_fn=death_signal())
        finally:
            if out is not None:
                out.close()
        proc = sup.proc
        assert proc.stdin is not None
        proc.stdin.write(boot)
        await proc.stdin.drain()
        proc.stdin.close()
        sup.exited = asyncio.Event()

    async def _supervise(self, sup: Supervised) -> None:
        pid = sup.spec.provider_id
        while not sup.stopping:
            try:
                await self._spawn(sup)
            except (OSError, SecretsUnavailable) as exc:
                sup.status = "failed"
                await self._event(EventType.PROVIDER_START_FAILED, sup, error=f"cannot start: {exc}")
                self.running.pop(pid, None)
                return
            assert sup.proc is not None
            started_at = loop_time()
            health = self.host.tasks.spawn(self._health_loop(sup, sup.proc), f"provider-health-{pid}")
            code = await sup.proc.wait()
            sup.exited.set()
            health.cancel()
            if sup.stopping:
                break
            if not sup.started_once:
                sup.status = "failed"
                await self._event(EventType.PROVIDER_START_FAILED, sup,
                                  error=f"process exited with {code} before it became healthy "
                                        f"(see {self.host.settings.state_dir / 'logs'}/provider-{pid}.log)")
                self.running.pop(pid, None)
                return
            if loop_time() - started_at > self.stable_after_s:
                sup.backoff_step = 0  # it ran well for a while: this crash starts the ladder again
            sup.restarts += 1
            sup.backoff_step += 1
            sup.status = "restarting"
            delay = min(30.0, 0.5 * 2 ** min(sup.backoff_step - 1, 6))
            await self._event(EventType.PROVIDER_STOPPED, sup, reason=f"exited with {code}; restarting in {delay}s",
                              restarts=sup.restarts)
            log.warning("provider %s exited with %s; restart %d in %.1fs", pid, code, sup.restarts, delay)
            await asyncio.sleep(delay)
        self.running.pop(pid, None)

    async def _check(self, sup: Supervised, timeout: float = 2.0) -> tuple[bool, str]:
        assert self.host.nc is not None
        subject = subjects.provider_health(self.host.lattice, sup.spec.provider_id, self.host.id)
        try:
            msg = await self.host.nc.request(subject, b"{}", timeout=timeout)
            reply = CtlReply.model_validate_json(msg.data)
        except Exception as exc:
            return False, f"no health answer: {exc.__class__.__name__}"
        data = reply.response or {}
        if isinstance(data, dict) and "local_state" in data:
            sup.local_state = bool(data["local_state"])
        return bool(reply.success and data.get("healthy", True)), str(data.get("message", reply.message))

    async def _health_loop(self, sup: Supervised, proc: asyncio.subprocess.Process | GroupMember) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        # until the first healthy answer: poll quickly (the process is starting)
        while not sup.started_once and proc.returncode is None:
            ok, message = await self._check(sup, timeout=0.5)
            sup.health_message = "" if ok else message
            if ok:
                break
            if loop.time() > deadline:
                await self._event(EventType.PROVIDER_START_FAILED, sup,
                                  error=f"not healthy within {self.start_timeout_s}s: {message}")
                sup.stopping = True
                await self._terminate(sup, self.stop_grace_s)
                return
            await asyncio.sleep(0.1)
        if proc.returncode is not None:
            return
        first = not sup.started_once
        sup.started_once = True
        sup.status, sup.healthy = "running", True
        if first or sup.restarts:
            await self._event(EventType.PROVIDER_STARTED, sup, restarts=sup.restarts)
        while proc.returncode is None:
            await asyncio.sleep(self.health_interval_s)
            ok, message = await self._check(sup)
            sup.health_message = "" if ok else message
            if ok != sup.healthy:
                sup.healthy = ok
                sup.status = "running" if ok else "unhealthy"
                await self._event(EventType.HEALTH_CHECK_PASSED if ok else EventType.HEALTH_CHECK_FAILED,
                                  sup, message=message)

    async def _terminate(self, sup: Supervised, grace_s: float) -> None:
        proc = sup.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        except ProcessLookupError:
            pass

    async def _stop(self, sup: Supervised, grace_s: float) -> None:
        sup.stopping = True
        sup.status = "stopping"
        await self._terminate(sup, grace_s)
        self.running.pop(sup.spec.provider_id, None)
        await self._event(EventType.PROVIDER_STOPPED, sup, reason="stopped")

    async def close(self, grace_s: float) -> None:
        await asyncio.gather(*(self._stop(s, grace_s) for s in list(self.running.values())),
                             return_exceptions=True)
        if self.group is not None:
            await self.group.close(grace_s)

    def sharing(self, pid: int) -> int:
        """How many providers process ``pid`` runs (its CPU and memory are split evenly between them)."""
        return self.group.shared(pid) if self.group is not None else 1
