"""Typed requests and replies of the control interface (JSON on the wire).

Every control request gets a :class:`CtlReply`: ``success`` says whether it
worked, ``message`` says why not in words for people, ``code`` is a stable
:class:`~interfaces.errors.ErrorCode` for programs, ``response`` carries data.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ErrorCode

M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class CtlReply(BaseModel):
    success: bool
    message: str = ""
    code: ErrorCode | None = None
    response: Any = None

    @classmethod
    def ok(cls, response: Any = None, message: str = "") -> "CtlReply":
        if isinstance(response, BaseModel):
            response = response.model_dump(mode="json")
        return cls(success=True, response=response, message=message)

    @classmethod
    def fail(cls, code: ErrorCode, message: str) -> "CtlReply":
        return cls(success=False, code=code, message=message)

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


# --- host description ----------------------------------------------------------

class Capacity(Model):
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


class ComponentDescription(Model):
    id: str
    image: str
    digest: str = ""
    max_instances: int = 1
    annotations: dict[str, str] = {}
    revision: int = 0


class ProviderDescription(Model):
    id: str
    image: str
    annotations: dict[str, str] = {}
    status: str = "running"


class HostInfo(Model):
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
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"invalid {model.__name__} request: {problems}") from None
