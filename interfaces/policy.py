"""The policy hook: hosts and wadm ask a policy service before they act.

Modelled on wasmCloud's policy service. When a policy subject is configured, a host asks
before it starts a component (``startComponent``, after fetching it, with its verified
claims) or a provider (``startProvider``), before its workers use a link (``putLink``),
and before it answers a privileged control request (``control``: stop a host, change
labels, scale/stop/update components, stop providers); wadm asks before it writes a
link (``putLink``) and before it answers a changing API request (``control`` with area
``wadm``: put, deploy, undeploy, delete). Read-only requests (ping, inventory, status)
are not asked about.

Request (JSON, NATS request/reply on the subject)::

    {"requestId": "…", "kind": "startComponent|startProvider|putLink|control", "version": "v1",
     "request": {…kind-specific, camelCase…},
     "requester": {"kind": "host|wadm", "publicKey": "N…", "lattice": "…", "labels": {…}}}

Answer::

    {"requestId": "…", "permitted": true|false, "message": "why (shown to the user)"}

A message on ``SUBJECT.changed`` (any payload) tells hosts the policy changed: their
workers forget the link decisions they keep and ask again for every link, so a link the
new policy refuses stops being followed.

No answer within ``timeout_s`` (or an unreadable one) falls back to ``default``: **deny**
unless configured otherwise. The subject is the operator's to choose; it must be one that
lattice members may publish to but not subscribe to (docs/operations.md), or a member
could answer in the service's place.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ErrorCode, TrellisError

log = logging.getLogger(__name__)

VERSION = "v1"
KINDS = ("startComponent", "startProvider", "putLink", "control")


class PolicyDenied(TrellisError):
    code = ErrorCode.FORBIDDEN


@dataclass
class PolicySettings:
    """Where to ask and what to do without an answer (environment: ``TRELLIS_POLICY_*``)."""

    #: NATS subject of the policy service; None = no policy hook (everything is permitted)
    subject: str | None = None
    #: how long to wait for a decision (seconds); a control-plane round trip is ~1 ms
    timeout_s: float = 1.0
    #: the decision when the service does not answer in time: "deny" (production) or "allow"
    default: Literal["deny", "allow"] = "deny"

    ENV = {"subject": "TRELLIS_POLICY_SUBJECT", "timeout_s": "TRELLIS_POLICY_TIMEOUT",
           "default": "TRELLIS_POLICY_DEFAULT"}

    def __post_init__(self) -> None:
        if self.default not in ("deny", "allow"):
            raise ValueError(f"policy default must be 'deny' or 'allow', not {self.default!r}")
        if not self.timeout_s > 0:
            raise ValueError("policy timeout must be more than 0 seconds")
        if self.subject is not None:
            self.subject = self.subject.strip() or None
            if self.subject and any(c in self.subject for c in " *>\t"):
                raise ValueError(f"policy subject {self.subject!r} must be a plain NATS subject (no wildcards)")

    @property
    def enabled(self) -> bool:
        return bool(self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "timeout_s": self.timeout_s, "default": self.default}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PolicySettings:
        return cls(**(data or {}))


@dataclass(frozen=True)
class PolicyDecision:
    permitted: bool
    message: str = ""
    request_id: str = ""
    #: True when no service answered and the default decided
    defaulted: bool = False


@dataclass
class PolicyClient:
    """Asks the policy service on ``settings.subject`` over the NATS connection ``nc``."""

    nc: Any
    settings: PolicySettings
    requester: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    async def evaluate(self, kind: str, body: dict[str, Any]) -> PolicyDecision:
        if not self.settings.enabled:
            return PolicyDecision(True, "no policy configured")
        assert kind in KINDS, kind
        rid = uuid.uuid4().hex
        payload = json.dumps({"requestId": rid, "kind": kind, "version": VERSION, "request": body,
                              "requester": self.requester}).encode()
        try:
            msg = await self.nc.request(self.settings.subject, payload, timeout=self.settings.timeout_s)
        except Exception as exc:  # timeout, no responders, disconnected
            why = "no answer" if exc.__class__.__name__ in ("TimeoutError", "NoRespondersError") else repr(exc)
            return self._default(rid, f"policy service on {self.settings.subject!r} gave {why} within "
                                      f"{self.settings.timeout_s:g}s")
        try:
            data = json.loads(msg.data)
            permitted = data["permitted"]
            if not isinstance(permitted, bool):
                raise TypeError("permitted is not a boolean")
            message = str(data.get("message") or "")
        except (ValueError, KeyError, TypeError) as exc:
            return self._default(rid, f"policy service sent an unreadable answer ({exc})")
        if data.get("requestId") not in (None, rid):
            return self._default(rid, "policy service answered another request")
        return PolicyDecision(permitted, message, rid)

    def _default(self, rid: str, why: str) -> PolicyDecision:
        permitted = self.settings.default == "allow"
        log.warning("%s; default: %s", why, self.settings.default)
        return PolicyDecision(permitted, f"{why}; default is {self.settings.default}", rid, defaulted=True)

    async def require(self, kind: str, body: dict[str, Any], what: str) -> PolicyDecision:
        """Raise `PolicyDenied` ("WHAT denied by policy: MESSAGE") unless permitted."""
        decision = await self.evaluate(kind, body)
        if not decision.permitted:
            raise PolicyDenied(f"{what} denied by policy: {decision.message or 'no reason given'}")
        return decision


def settings_from_env(**overrides: Any) -> PolicySettings:
    values: dict[str, Any] = {}
    for attr, var in PolicySettings.ENV.items():
        if os.environ.get(var):
            values[attr] = os.environ[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "timeout_s" in values:
        values["timeout_s"] = float(values["timeout_s"])
    return PolicySettings(**values)


def changed_subject(settings: PolicySettings) -> str:
    """Where the policy service announces that its policy changed (``SUBJECT.changed``):
    hosts then forget the decisions they keep (links) and ask again."""
    return f"{settings.subject}.changed"


def claims_body(claims: Any) -> dict[str, Any] | None:
    """The verified claims of an artifact as a policy request carries them (wasmCloud's names)."""
    if claims is None:
        return None
    return {"publicKey": claims.subject, "issuer": claims.issuer, "name": claims.name, "version": claims.ver,
            "revision": claims.rev, "tags": list(claims.tags), "expiresAt": claims.expires,
            "hash": claims.hash}


def link_body(link: Any) -> dict[str, Any]:
    return {"sourceId": link.source_id, "target": link.target, "name": link.name,
            "witNamespace": link.wit_namespace, "witPackage": link.wit_package,
            "interfaces": list(link.interfaces)}
