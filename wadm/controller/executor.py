"""The executor: turns the scalers' commands into lattice requests and waits for their outcome.

One call of `Executor.run` applies one pass's commands:

* **in list order**, phase by phase: consecutive commands of one kind (configs,
  placements, links) form a phase and run concurrently, except that commands on
  the same thing (the same host and id, the same link, the same config) run one
  after the other. The scalers order their output so that configs come before
  what reads them and link deletes before conflicting puts;
* each placement command is a control request (``LatticeClient.request``) whose
  outcome event (``component_scaled`` / ``component_scale_failed``,
  ``provider_started`` / ``provider_start_failed`` / ``provider_stopped``) is
  awaited *through the observer*, so when `run` returns the controller's view
  already includes what the pass did: the next pass never repeats it;
* link and config writes go to the `LatticeStore`, preceded by an ownership record
  (so the observer can tell which application put them), and are awaited until
  the observer's watch shows them;
* a failed command is remembered in the `FailureBook` and left out of later passes
  until its backoff expires;
* before each command the executor checks that this controller still holds the
  lease; if not, the rest of the pass is dropped.

Every command is logged with its pass id; placements also carry it in the
``trellis.pass`` annotation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from trellis.interfaces import control as ctl
from trellis.interfaces import subjects
from trellis.interfaces.client import ControlError, LatticeClient
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.events import EventType
from trellis.interfaces.links import Link
from trellis.interfaces.policy import PolicyClient, link_body
from trellis.interfaces.secrets import Grant, SecretRef, SignedGrant
from trellis.interfaces.store import LatticeStore
from trellis.signing.secrets import NKey, issue_grant

from ..commands import (
    Command,
    DeleteConfig,
    DeleteLink,
    PinState,
    PutConfig,
    PutLink,
    ScaleComponent,
    StartComponent,
    StartProvider,
    StopComponent,
    StopProvider,
    UpdateComponent,
)
from ..observed import PASS_ANNOTATION, Reuse, StatePin
from ..scaler.placement import RESTART_REASON
from .app_store import AppStore
from .failures import FailureBook, host_of, subject_of
from .observer import HostGone, Observer
from .settings import ControllerSettings

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    pass


class NotLeader(Exception):
    pass


@dataclass
class PassResult:
    pass_id: str
    applied: list[Command] = field(default_factory=list)
    failed: list[tuple[Command, str]] = field(default_factory=list)
    deferred: list[Command] = field(default_factory=list)
    """Left out: still backing off after an earlier failure."""
    aborted: bool = False
    """This controller lost the lease during the pass."""


def _phase(cmd: Command) -> str:
    if isinstance(cmd, PutConfig | DeleteConfig):
        return "config"
    if isinstance(cmd, PutLink | DeleteLink):
        return "link"
    if isinstance(cmd, PinState):
        return "pin"
    return "placement"


def phases(commands: Sequence[Command]) -> list[list[Command]]:
    """Consecutive commands of the same kind, in order."""
    out: list[list[Command]] = []
    for cmd in commands:
        if out and _phase(out[-1][0]) == _phase(cmd):
            out[-1].append(cmd)
        else:
            out.append([cmd])
    return out


def chains(phase: Sequence[Command]) -> list[list[Command]]:
    """A phase split into chains that may run concurrently (same target → same chain, in order)."""
    by_target: dict[tuple[str, str], list[Command]] = {}
    for cmd in phase:
        by_target.setdefault((host_of(cmd) or "", subject_of(cmd)), []).append(cmd)
    return list(by_target.values())


class Executor:
    def __init__(self, client: LatticeClient, store: LatticeStore, apps: AppStore, observer: Observer,
                 settings: ControllerSettings, may_act: Callable[[], bool],
                 grant_key: NKey | None = None, policy: PolicyClient | None = None) -> None:
        self.client = client
        self.grant_key = grant_key
        self.lattice = client.lattice
        self.store = store
        self.apps = apps
        self.observer = observer
        self.settings = settings
        self.may_act = may_act
        self.policy = policy
        self.book = FailureBook(settings.backoff_base_s, settings.backoff_max_s)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self, commands: Sequence[Command], pass_id: str, epochs: dict[str, int] | None = None) -> PassResult:
        """Apply ``commands``; ``epochs``: each app's failure epoch (`FailureBook.epoch`) when the pass read
        what it planned from (a command's failure is forgotten if its app was deployed again since)."""
        result = PassResult(pass_id)
        epochs = {cmd.app: self.book.epoch(cmd.app) for cmd in commands} | (epochs or {})
        now = self._now()
        todo = []
        for cmd in commands:
            if self.book.allowed(cmd, now):
                todo.append(cmd)
            else:
                result.deferred.append(cmd)
        if result.deferred:
            log.debug("[%s] %d command(s) backing off", pass_id, len(result.deferred))
        for phase in phases(todo):
            outcomes = await asyncio.gather(*(self._chain(chain, result, epochs) for chain in chains(phase)),
                                            return_exceptions=True)
            for o in outcomes:
                if isinstance(o, NotLeader):
                    result.aborted = True
                elif isinstance(o, BaseException):
                    raise o
            if result.aborted:
                log.warning("[%s] lost the lease: dropping the rest of the pass", pass_id)
                break
        return result

    async def _chain(self, chain: list[Command], result: PassResult, epochs: dict[str, int]) -> None:
        for cmd in chain:
            if not self.may_act():
                raise NotLeader()
            log.info("[%s] %s (%s)", cmd.pass_id, cmd.describe(), cmd.reason or "-")
            epoch = epochs[cmd.app]
            try:
                await self.apply(cmd)
            except CommandFailed as exc:
                if self.book.epoch(cmd.app) != epoch:  # deployed again meanwhile: not the new version's failure
                    log.info("[%s] %s failed after %s changed (not remembered): %s", cmd.pass_id, cmd.describe(),
                             cmd.app, exc)
                    result.failed.append((cmd, str(exc)))
                    continue
                failure = self.book.failed(cmd, str(exc), self._now())
                log.warning("[%s] %s failed (attempt %d, retry in %.1fs): %s", cmd.pass_id, cmd.describe(),
                            failure.attempts, failure.retry_at - failure.failed_at, exc)
                result.failed.append((cmd, str(exc)))
                continue
            self.book.succeeded(cmd)
            if isinstance(cmd, StopProvider) and cmd.reason.startswith(RESTART_REASON):
                self.book.restarted(cmd.app, cmd.provider_id, cmd.host_id, self._now())
            result.applied.append(cmd)

    # --- one command -----------------------------------------------------------------

    async def apply(self, cmd: Command) -> None:  # noqa: C901 - one branch per command
        s = self.settings
        if isinstance(cmd, StartComponent):
            req: BaseModel = ctl.StartComponentCommand(
                component_id=cmd.component_id, image=cmd.image, max_instances=cmd.max_instances,
                annotations=self._tags(cmd.annotations, cmd.pass_id), config=list(cmd.config), digest=None,
                reuse=self._reuse(cmd.reuse),
                limits=ctl.LimitsSpec() if cmd.timeout_ms is None else ctl.LimitsSpec(timeout_s=cmd.timeout_ms / 1000),
                secrets_grant=self._grant(cmd.app, cmd.component_id, "component", cmd.host_id, cmd.secrets))
            await self._component(cmd.host_id, cmd.component_id, ctl.ComponentOp.START, req, s.start_timeout_s)
        elif isinstance(cmd, ScaleComponent):
            req = ctl.ScaleComponentCommand(component_id=cmd.component_id, max_instances=cmd.max_instances,
                                     annotations=self._tags(cmd.annotations, cmd.pass_id))
            await self._component(cmd.host_id, cmd.component_id, ctl.ComponentOp.SCALE, req, s.op_timeout_s)
        elif isinstance(cmd, UpdateComponent):
            req = ctl.UpdateComponentCommand(component_id=cmd.component_id, image=cmd.image,
                                      reuse=None if cmd.reuse is None else self._reuse(cmd.reuse))
            await self._component(cmd.host_id, cmd.component_id, ctl.ComponentOp.UPDATE, req, s.start_timeout_s)
        elif isinstance(cmd, StopComponent):
            req = ctl.StopComponentCommand(component_id=cmd.component_id)
            await self._component(cmd.host_id, cmd.component_id, ctl.ComponentOp.STOP, req, s.op_timeout_s,
                                  missing_ok=True)
        elif isinstance(cmd, StartProvider):
            await self._start_provider(cmd)
        elif isinstance(cmd, StopProvider):
            await self._outcome(
                subjects.provider_op(self.lattice, cmd.host_id, ctl.ProviderOp.STOP),
                ctl.StopProviderCommand(provider_id=cmd.provider_id, timeout_s=None),
                {"host_id": cmd.host_id, "provider_id": cmd.provider_id, "reason": "stopped"},
                (EventType.PROVIDER_STOPPED,), (), cmd.host_id, s.op_timeout_s, missing_ok=True)
        elif isinstance(cmd, PutLink):
            await self._put_link(cmd)
        elif isinstance(cmd, DeleteLink):
            await self._delete_link(cmd)
        elif isinstance(cmd, PutConfig):
            await self._put_config(cmd)
        elif isinstance(cmd, DeleteConfig):
            await self._delete_config(cmd)
        elif isinstance(cmd, PinState):
            await self._pin_state(cmd)
        else:  # pragma: no cover - the union is closed
            raise CommandFailed(f"unknown command {cmd!r}")

    def _grant(self, app: str, part: str, kind: str, host_id: str,
               refs: tuple[SecretRef, ...]) -> SignedGrant | None:
        """wadm's word that ``host_id`` runs ``part`` of ``app``, which reads ``refs`` (the keyholder checks it)."""
        if not refs:
            return None
        if self.grant_key is None:
            raise CommandFailed(f"{kind} {part} reads secrets, but this wadm has no secrets key "
                                "(start it with --secrets-key FILE, as 'trellis up' does)")
        grant = Grant(app=app, part=part, kind=kind, host=host_id, secrets=refs, issued_at=time.time())
        return issue_grant(self.grant_key, grant)

    @staticmethod
    def _reuse(reuse: Reuse) -> ctl.ReuseSpec:
        return ctl.ReuseSpec(max_invocations=reuse.max_invocations, max_idle_s=reuse.max_idle_s)

    @staticmethod
    def _tags(annotations: Any, pass_id: str) -> dict[str, str]:
        tags = dict(annotations)
        if pass_id:
            tags[PASS_ANNOTATION] = pass_id
        return tags

    async def _component(self, host_id: str, component_id: str, op: str, req: BaseModel, timeout_s: float,
                         missing_ok: bool = False) -> None:
        await self._outcome(subjects.component_op(self.lattice, host_id, op), req,
                            {"host_id": host_id, "component_id": component_id},
                            (EventType.COMPONENT_SCALED,), (EventType.COMPONENT_SCALE_FAILED,), host_id, timeout_s,
                            missing_ok=missing_ok)

    async def _start_provider(self, cmd: StartProvider) -> None:
        req = ctl.StartProviderCommand(provider_id=cmd.provider_id, image=cmd.image, config=list(cmd.config),
                                annotations=self._tags(cmd.annotations, cmd.pass_id),
                                secrets_grant=self._grant(cmd.app, cmd.provider_id, "provider", cmd.host_id,
                                                          cmd.secrets))
        await self._outcome(subjects.provider_op(self.lattice, cmd.host_id, ctl.ProviderOp.START), req,
                            {"host_id": cmd.host_id, "provider_id": cmd.provider_id},
                            (EventType.PROVIDER_STARTED,), (EventType.PROVIDER_START_FAILED,), cmd.host_id,
                            self.settings.start_timeout_s, already_key="already_running")

    async def _outcome(self, subject: str, req: BaseModel, match: dict[str, Any], ok: tuple[str, ...],
                       failed: tuple[str, ...], host_id: str, timeout_s: float, *, missing_ok: bool = False,
                       already_key: str | None = None) -> None:
        """Send a control request, then wait (through the observer) for the event reporting its outcome."""
        fut = self.observer.expect(match, ok, failed, host_id=host_id)
        try:
            reply = await self.client.request(subject, req)
        except ControlError as exc:
            self.observer.forget(fut)
            if missing_ok and exc.code == ErrorCode.NOT_FOUND:
                return  # already gone
            raise CommandFailed(f"host refused: {exc.message}") from None
        if already_key and isinstance(reply, dict) and reply.get(already_key):
            self.observer.forget(fut)
            return
        loop = asyncio.get_running_loop()
        began, wait_s = loop.time(), timeout_s
        component = match.get("component_id") if EventType.COMPONENT_SCALED in ok else None
        while True:
            try:
                ev = await asyncio.wait_for(asyncio.shield(fut), wait_s)
                break
            except HostGone as exc:
                raise CommandFailed(str(exc)) from None
            except TimeoutError:
                waited = loop.time() - began
                doing = await self._still_under_way(host_id, component) if component else None
                if doing is None or waited >= self.settings.start_max_s:
                    self.observer.forget(fut)
                    raise CommandFailed(f"no outcome within {waited:.0f}s"
                                        + (f" (the host was still at '{doing}')" if doing else "")) from None
                log.info("%s on host %s: still at '%s' after %.0fs; waiting", component, host_id, doing, waited)
                wait_s = min(timeout_s, 30.0)
        if ev.type in failed:
            raise CommandFailed(str(ev.data.get("error") or ev.type))

    async def _still_under_way(self, host_id: str, component_id: str) -> str | None:
        """What the host says it is doing for ``component_id`` now (``HostInfo.pending``, asked of it),
        or None when it names no such work (or does not answer within three heartbeat intervals)."""
        interval = self.observer.heartbeat_interval(host_id)
        try:
            async with asyncio.timeout(3 * interval + 1.0):
                info = await self.client.get_inventory(host_id)
        except Exception as exc:  # gone, or not answering: nothing under way that we can see
            log.debug("inventory of %s not read: %r", host_id, exc)
            return None
        doing = info.pending.get(component_id)
        return str(doing) if doing else None

    # --- links and configs -----------------------------------------------------------

    async def _visible(self, predicate: Callable[[Any], bool], what: str) -> None:
        try:
            await self.observer.wait_until(predicate, self.settings.store_timeout_s)
        except TimeoutError:
            raise CommandFailed(f"{what} not visible in the store within {self.settings.store_timeout_s:g}s") from None

    async def _put_link(self, cmd: PutLink) -> None:
        try:
            link = Link.build(source_id=cmd.source_id, target=cmd.target, name=cmd.name,
                              wit_namespace=cmd.namespace, wit_package=cmd.package,
                              interfaces=list(cmd.interfaces), source_config=list(cmd.source_config),
                              target_config=list(cmd.target_config))
            if self.policy is not None and self.policy.enabled:
                await self.policy.require("putLink", {**link_body(link), "app": cmd.app}, f"link {link.describe()}")
            await self.apps.set_link_owner(link.identity, cmd.app)
            await self.store.put_link(link)
        except TrellisError as exc:
            raise CommandFailed(exc.message) from None
        ident = link.identity
        await self._visible(lambda v: v.links.get(ident) == link and v.link_owners.get(ident) == cmd.app,
                            f"link {link.describe()}")

    async def _delete_link(self, cmd: DeleteLink) -> None:
        ident = cmd.identity
        try:
            await self.store.delete_link(cmd.source_id, cmd.namespace, cmd.package, cmd.name, cmd.target)
            await self.apps.clear_link_owner(ident)
        except TrellisError as exc:
            raise CommandFailed(exc.message) from None
        await self._visible(lambda v: ident not in v.links and ident not in v.link_owners, "link deletion")

    async def _put_config(self, cmd: PutConfig) -> None:
        values = dict(cmd.values)
        try:
            await self.apps.set_config_owner(cmd.name, cmd.app)
            await self.store.put_config(cmd.name, values)
        except TrellisError as exc:
            raise CommandFailed(exc.message) from None
        await self._visible(lambda v: v.configs.get(cmd.name) == values and v.config_owners.get(cmd.name) == cmd.app,
                            f"config {cmd.name}")

    async def _pin_state(self, cmd: PinState) -> None:
        pin = StatePin(cmd.state_id, cmd.host_id, cmd.host_name, cmd.labels)
        try:
            await self.apps.set_state_pin(cmd.app, cmd.provider_id, {
                "state_id": cmd.state_id, "host_id": cmd.host_id, "host_name": cmd.host_name,
                "labels": dict(cmd.labels)})
        except Exception as exc:  # JetStream errors included: retried with backoff like any failed command
            raise CommandFailed(f"cannot record where the data of {cmd.provider_id} lives: {exc!r}") from None
        key = (cmd.app, cmd.provider_id)
        await self._visible(lambda v: v.pins.get(key) == pin, f"the data pin of {cmd.provider_id}")

    async def _delete_config(self, cmd: DeleteConfig) -> None:
        try:
            await self.store.delete_config(cmd.name)
            await self.apps.clear_config_owner(cmd.name)
        except TrellisError as exc:
            raise CommandFailed(exc.message) from None
        await self._visible(lambda v: cmd.name not in v.configs and cmd.name not in v.config_owners,
                            f"config {cmd.name} deletion")
