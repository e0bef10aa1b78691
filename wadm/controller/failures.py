"""Failed commands: backoff before retrying them, and reasons for the status. Pure.

A command that fails (a host refuses it, the host reports ``component_scale_failed``
because the image cannot be fetched, a provider does not become healthy, …) is
remembered under a key naming what it acts on. Until its backoff expires, the
same command is left out of later passes (the scalers keep asking for it: they
are level-triggered); then it is tried again, with a delay doubling up to a
maximum. A success, or the thing reaching its desired state, forgets the failure.
The status reports a remembered failure as the reason a component or link is
``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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

FailureKey = tuple[str, ...]


def subject_of(cmd: Command) -> str:
    """What the command acts on: a component/provider id, a link, or a config name."""
    if isinstance(cmd, StartComponent | ScaleComponent | UpdateComponent | StopComponent):
        return cmd.component_id
    if isinstance(cmd, StartProvider | StopProvider):
        return cmd.provider_id
    if isinstance(cmd, PutLink | DeleteLink):
        return "link:" + "/".join(cmd.identity)
    if isinstance(cmd, PinState):
        return "pin:" + cmd.provider_id
    return "config:" + cmd.name


def host_of(cmd: Command) -> str | None:
    return getattr(cmd, "host_id", None)


def verb_of(cmd: Command) -> str:
    return {
        StartComponent: "start", ScaleComponent: "scale", UpdateComponent: "update", StopComponent: "stop",
        StartProvider: "start", StopProvider: "stop", PutLink: "put link", DeleteLink: "delete link",
        PutConfig: "put config", DeleteConfig: "delete config", PinState: "pin data",
    }[type(cmd)]


def key_of(cmd: Command) -> FailureKey:
    return (cmd.app, type(cmd).__name__, host_of(cmd) or "", subject_of(cmd))


@dataclass
class CommandFailure:
    app: str
    subject: str
    verb: str
    host_id: str | None
    error: str
    attempts: int
    failed_at: float
    retry_at: float

    def describe(self) -> str:
        where = f" on host {self.host_id}" if self.host_id else ""
        tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.verb}{where} failed{tries}: {self.error}"


@dataclass
class FailureBook:
    base_s: float = 0.5
    max_s: float = 10.0
    failures: dict[FailureKey, CommandFailure] = field(default_factory=dict)
    restarts: dict[tuple[str, str, str], float] = field(default_factory=dict)
    """(app, provider id, host id) → when the controller last restarted that unhealthy provider there."""
    restart_memory_s: float = 300.0
    """How long a restart is remembered: a provider unhealthy again within it goes elsewhere if it can."""

    epochs: dict[str, int] = field(default_factory=dict)
    """App → how many times its failures were cleared (a deploy, an undeploy, a delete): a command
    that was under way when that happened must not record its failure against the new version."""

    def epoch(self, app: str) -> int:
        return self.epochs.get(app, 0)

    def delay(self, attempts: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** max(0, attempts - 1)))

    def allowed(self, cmd: Command, now: float) -> bool:
        f = self.failures.get(key_of(cmd))
        return f is None or now >= f.retry_at

    def failed(self, cmd: Command, error: str, now: float) -> CommandFailure:
        key = key_of(cmd)
        prior = self.failures.get(key)
        attempts = (prior.attempts if prior else 0) + 1
        f = CommandFailure(cmd.app, subject_of(cmd), verb_of(cmd), host_of(cmd), error, attempts, now,
                    now + self.delay(attempts))
        self.failures[key] = f
        return f

    def succeeded(self, cmd: Command) -> None:
        self.failures.pop(key_of(cmd), None)

    def for_app(self, app: str) -> list[CommandFailure]:
        return [f for f in self.failures.values() if f.app == app]

    def clear_app(self, app: str) -> None:
        self.epochs[app] = self.epoch(app) + 1
        for key in [k for k, f in self.failures.items() if f.app == app]:
            del self.failures[key]

    def avoid(self, app: str) -> dict[str, frozenset[str]]:
        """Component/provider id → hosts where starting it failed (remembered until it succeeds or
        the thing is deployed): the scalers choose those hosts last, so it is placed elsewhere
        when the manifest allows."""
        out: dict[str, set[str]] = {}
        for f in self.failures.values():
            if f.app == app and f.verb == "start" and f.host_id:
                out.setdefault(f.subject, set()).add(f.host_id)
        return {k: frozenset(v) for k, v in out.items()}

    def restarted(self, app: str, provider_id: str, host_id: str, now: float) -> None:
        self.restarts[(app, provider_id, host_id)] = now

    def restarted_hosts(self, app: str, now: float) -> dict[str, frozenset[str]]:
        """Provider id → hosts where the controller restarted it within `restart_memory_s`."""
        for key in [k for k, at in self.restarts.items() if now - at > self.restart_memory_s]:
            del self.restarts[key]
        out: dict[str, set[str]] = {}
        for (a, pid, host_id) in self.restarts:
            if a == app:
                out.setdefault(pid, set()).add(host_id)
        return {k: frozenset(v) for k, v in out.items()}

    def clear_subjects(self, app: str, subjects: Iterable[str]) -> None:
        done = set(subjects)
        for key in [k for k, f in self.failures.items() if f.app == app and f.subject in done]:
            del self.failures[key]
