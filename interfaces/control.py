"""Typed requests and replies of the control interface (JSON on the wire).

Every control request gets a :class:`CtlReply`: ``success`` says whether it
worked, ``message`` says why not in words for people, ``code`` is a stable
:class:`~trellis.interfaces.errors.ErrorCode` for programs, ``response`` carries data.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from .errors import ErrorCode
from .secrets import SignedGrant

M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class CtlReply(BaseModel):
    success: bool
    message: str = ""
    code: ErrorCode | None = None
    response: Any = None

    @classmethod
    def ok(cls, response: Any = None, message: str = "") -> CtlReply:
        if isinstance(response, BaseModel):
            response = response.model_dump(mode="json")
        return cls(success=True, response=response, message=message)

    @classmethod
    def fail(cls, code: ErrorCode, message: str) -> CtlReply:
        return cls(success=False, code=code, message=message)

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


# --- host description ----------------------------------------------------------

class Description(BaseModel):
    """What a host reports: unknown fields from a newer host are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


class Capacity(Description):
    cpus: int = Field(description="logical CPUs the host may use")
    memory_total_bytes: int
    memory_available_bytes: int
    load_1m: float
    load_5m: float = 0.0
    load_15m: float = 0.0
    workers: int = Field(0, description="Wasm worker processes")
    components: int = Field(0, description="components running")
    providers: int = Field(0, description="providers running")
    instances_max: int = Field(0, description="sum of max_instances over components")


class ReuseDescription(Description):
    """The instance reuse a component runs with (see `ReuseSpec`), as a host reports it."""

    max_invocations: int = 1
    max_idle_s: float | None = None


class ComponentDescription(Description):
    id: str
    image: str
    digest: str = ""
    max_instances: int = 1
    annotations: dict[str, str] = {}
    revision: int = 0
    reuse: ReuseDescription | None = Field(
        None, description="the instance reuse it runs with; None from hosts that do not report it")
    issuer: str | None = Field(None, description="the trusted issuer that signed it, on hosts that require signatures")


class ProviderDescription(Description):
    id: str
    image: str
    annotations: dict[str, str] = {}
    status: str = "running"
    """starting | running | unhealthy | restarting | stopping | failed"""
    health_message: str = Field("", description="what the provider's last health answer said (why it is unhealthy)")
    local_state: bool = Field(False, description="the provider declares that its data lives on this host")


class HostInfo(Description):
    id: str
    name: str
    lattice: str
    labels: dict[str, str]
    version: str
    uptime_s: float
    started_at: str
    capacity: Capacity
    components: list[ComponentDescription] = []
    providers: list[ProviderDescription] = []
    heartbeat_interval_s: float = 1.0
    state_id: str = Field("", description="stable id of the host's state dir (where local data lives); "
                                         "the same across restarts of a host on the same state dir")
    pending: dict[str, str] = Field(
        {}, description="components whose start, update, scale or stop is under way here: id -> what the "
                        "host is doing for it now (e.g. 'start: compiling'); wadm waits on a start past its "
                        "timeout while the host's heartbeats still name it here")
    inventory: str = Field(
        "", description="a digest of what the host says about itself apart from its uptime and capacity "
                        "(labels, components, providers, pending work, ...): the same digest in a light "
                        "heartbeat (`HostBeat`) means none of it changed; empty from hosts that send every "
                        "heartbeat in full")

    def inventory_digest(self) -> str:
        """The digest `inventory` carries, computed from this description."""
        return inventory_digest(self)


#: the fields a host's `HostInfo.inventory` digest does not cover (they change at every heartbeat)
VOLATILE_FIELDS = frozenset({"uptime_s", "capacity", "inventory"})


#: a host's components' JSON for :func:`inventory_digest`, by ``id()`` of each description (kept with it)
ComponentJson = dict[int, tuple["ComponentDescription", bytes]]


def inventory_digest(info: HostInfo, described: ComponentJson | None = None) -> str:
    """The digest of everything in ``info`` but its `VOLATILE_FIELDS`. Only the host that sends it
    computes it; others compare it with the one they hold. With ``described`` (kept by the caller
    between calls and updated here), a component description serialised before is not serialised
    again: a host beats every second, and serialising 50 components each time was most of an idle
    host's CPU. It holds descriptions by identity: a host replaces a description that changes,
    never changes one in place."""
    import hashlib

    h = hashlib.blake2b(info.model_dump_json(exclude=set(VOLATILE_FIELDS) | {"components"}).encode(),
                        digest_size=12)
    seen: ComponentJson = {}
    for c in info.components:
        known = described.get(id(c)) if described is not None else None
        if known is None or known[0] is not c:
            known = (c, c.model_dump_json().encode())
        seen[id(c)] = known
        h.update(b"\n")
        h.update(known[1])
    if described is not None:
        described.clear()
        described.update(seen)
    return h.hexdigest()


class HostBeat(Description):
    """A light heartbeat (``host_heartbeat`` whose data has no ``components``): the host is alive,
    its uptime and capacity, and the digest of its inventory. A host sends its whole `HostInfo` in a
    heartbeat only when that digest changed (and in ``host_started``); whoever holds an older digest
    asks the host for its inventory (`HostOp.INVENTORY`)."""

    id: str
    name: str = ""
    uptime_s: float = 0.0
    capacity: Capacity | None = None
    heartbeat_interval_s: float = 1.0
    inventory: str

    @staticmethod
    def is_light(data: Any) -> bool:
        """Whether a heartbeat's data is a `HostBeat` (rather than a whole `HostInfo`)."""
        return isinstance(data, dict) and "components" not in data and bool(data.get("inventory"))


# --- host operations -------------------------------------------------------------

class Empty(Model):
    pass


class LabelPut(Model):
    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)


class LabelDel(Model):
    key: str = Field(min_length=1, max_length=256)


class StopHost(Model):
    timeout_s: float | None = Field(None, ge=0, description="drain deadline; host default when unset")


class HostOp:
    """Operation names (subject suffixes) a host answers."""

    INVENTORY = "inventory"
    LABEL_PUT = "label.put"
    LABEL_DEL = "label.del"
    STOP = "stop"
    #: what its components and providers used since it started (host/usage.py)
    USAGE = "usage"


def parse_request(model: type[M], data: bytes) -> M:
    """Decode a JSON control request, raising ValueError with a readable reason."""
    if not data.strip():
        data = b"{}"
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"request is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"request must be a JSON object, got {type(raw).__name__}")
    return build(model, raw)


def build(model: type[M], raw: dict[str, Any]) -> M:
    """Validate ``raw`` as ``model``, raising ValueError that names each field at fault."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"invalid {model.__name__} request: {problems}") from None


def _without_none(data: Any, key: str) -> Any:
    """Hosts from before a field refuse the key even as null: send it only when set."""
    if isinstance(data, dict) and data.get(key) is None:
        data.pop(key, None)
    return data


# --- components -------------------------------------------------------------------

class ReuseSpec(Model):
    """Opt-in instance reuse; the default is a fresh instance per invocation."""

    max_invocations: int = Field(1, ge=1, description="calls one instance serves before it is dropped")
    max_idle_s: float | None = Field(None, ge=0, description="drop an instance idle this long")


class LimitsSpec(Model):
    timeout_s: float | None = Field(10.0, gt=0, description="per-invocation deadline inside the component")
    fuel: int | None = Field(None, ge=0, description="instruction budget per invocation; unset = unlimited")
    memory_bytes: int | None = Field(256 * 1024 * 1024, gt=0, description="linear-memory cap per instance")


class WasiSpec(Model):
    """WASI grants: deny-by-default."""

    env: dict[str, str] = {}
    preopens: list[dict[str, Any]] = Field(default_factory=list, description="[{host_path, guest_path, writable}]")
    inherit_stdio: bool = False


class StartComponentCommand(Model):
    component_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")
    image: str = Field(min_length=1)
    max_instances: int = Field(1, ge=1, le=100_000)
    annotations: dict[str, str] = {}
    config: list[str] = Field(default_factory=list, description="named configs the component reads")
    reuse: ReuseSpec = Field(default_factory=ReuseSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    wasi: WasiSpec = Field(default_factory=WasiSpec)
    digest: str | None = Field(None, description="expected sha256 of the artifact (pinning)")
    non_retryable: list[str] = Field(
        default_factory=list,
        description="functions that run at most once: a call lost in flight is reported, not re-sent",
    )
    secrets_grant: SignedGrant | None = Field(
        None, description="wadm's signed grant: the host fetches these secrets from the keyholder")

    @model_serializer(mode="wrap")
    def _leave_out_unset_grant(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _without_none(handler(self), "secrets_grant")


class StopComponentCommand(Model):
    component_id: str = Field(min_length=1, max_length=128)


class ScaleComponentCommand(Model):
    component_id: str = Field(min_length=1, max_length=128)
    max_instances: int = Field(ge=0, le=100_000, description="0 stops the component")
    annotations: dict[str, str] | None = None


class UpdateComponentCommand(Model):
    component_id: str = Field(min_length=1, max_length=128)
    image: str = Field(min_length=1)
    digest: str | None = None
    reuse: ReuseSpec | None = Field(None, description="a new instance reuse policy; unset keeps the current one")

    @model_serializer(mode="wrap")
    def _leave_out_unset_reuse(self, handler: SerializerFunctionWrapHandler) -> Any:
        # hosts from before `reuse` refuse the key even as null: send it only when set
        data = handler(self)
        if isinstance(data, dict) and data.get("reuse") is None:
            data.pop("reuse", None)
        return data


class ComponentOp:
    START = "start"
    STOP = "stop"
    SCALE = "scale"
    UPDATE = "update"


# --- providers --------------------------------------------------------------------

class StartProviderCommand(Model):
    provider_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")
    image: str = Field(min_length=1, description="builtin:NAME, python:MODULE, a .py file, or file://….py")
    config: list[str] = Field(default_factory=list, description="named configs, merged in order")
    inline_config: dict[str, str] = Field(default_factory=dict, description="values under the named ones")
    annotations: dict[str, str] = {}
    secrets_grant: SignedGrant | None = Field(
        None, description="wadm's signed grant: the host fetches these secrets and hands them to the provider")

    @model_serializer(mode="wrap")
    def _leave_out_unset_grant(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _without_none(handler(self), "secrets_grant")


class StopProviderCommand(Model):
    provider_id: str = Field(min_length=1, max_length=128)
    timeout_s: float | None = Field(None, ge=0, description="grace period before the process is killed")


class ProviderOp:
    START = "start"
    STOP = "stop"
