"""The host↔worker channel: typed messages, one JSON object a line.

The host (``pool.py``) writes a :class:`Boot` line, then commands (:data:`Command`,
told apart by ``op``) on the worker's stdin; the worker (``worker.py``) writes
:class:`Ready` once it serves, then one :class:`Answer` per command on its stdout.
Both ends parse with these models, so a field renamed on one side fails on the
other as a one-line validation error, not as a silent ``None``.

The boot carries everything a worker is configured with, the runtime tuning
(``host/tuning.py``) included: a worker reads no ``TRELLIS_*`` switch from its
environment. Logging is the exception: its variables (``TRELLIS_LOG_*``) are given
to every process of the host alike, before it can log anything.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from trellis.interfaces.control import LimitsSpec, ReuseSpec, WasiSpec

from ..tuning import Tuning

#: how long a worker lets its calls finish on unload, update and shutdown unless told otherwise
DEFAULT_GRACE_S = 10.0


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def line(self) -> bytes:
        """The message as one line of the channel."""
        return (self.model_dump_json() + "\n").encode()


class Boot(_Message):
    """The first line a worker reads: who it is, where the lattice is, how it is tuned."""

    lattice: str
    host_id: str
    worker_index: int = 0
    nats: dict[str, Any] = Field(description="NatsSettings.to_dict(): how to reach NATS")
    cache_dir: str | None = Field(None, description="compiled-code cache (None: memory only)")
    threads: int = Field(8, ge=1, description="Wasm threads at least (more when shares need them)")
    instance_allocator: Literal["on-demand", "pooling"] = Field(
        "on-demand", description="how Wasm instances are allocated (HostSettings.instance_allocator)")
    handoff: bool = Field(False, description="take HTTP connections from this host's http-server")
    policy: dict[str, Any] | None = Field(None, description="PolicySettings.to_dict(); None: no policy")
    policy_requester: dict[str, Any] = Field(default_factory=dict)
    log_dir: str | None = None
    tuning: Tuning = Field(default_factory=Tuning)


class Load(_Message):
    """Serve a component (or a new version of it: the new one serves, then the old one drains)."""

    op: Literal["load"] = "load"
    id: int = 0
    component_id: str
    path: str = Field(description="the component's Wasm file on this host")
    digest: str = ""
    max_instances: int = Field(1, ge=0, description="per host; each worker serves its share")
    share: int = Field(0, ge=0, description="this worker's part of max_instances (0: loaded, not served)")
    queue: int | None = Field(None, ge=0, description="calls waiting for a slot at most (None: 4 per slot, "
                                                      "at least 16)")
    reuse: ReuseSpec = Field(default_factory=ReuseSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    wasi: WasiSpec = Field(default_factory=WasiSpec)
    config: list[str] = Field(default_factory=list, description="named configs it reads")
    non_retryable: list[str] = Field(default_factory=list)
    app: str = Field("", description="the app it belongs to (its trellis.app annotation)")
    secrets: dict[str, Any] | None = Field(None, repr=False, description="its secrets, wire form "
                                           "(SecretValue.to_wire); never logged")
    grace_s: float = DEFAULT_GRACE_S

    def for_worker(self, share: int) -> Load:
        return self.model_copy(update={"share": share})


class Unload(_Message):
    op: Literal["unload"] = "unload"
    id: int = 0
    component_id: str
    grace_s: float = DEFAULT_GRACE_S


class Scale(_Message):
    op: Literal["scale"] = "scale"
    id: int = 0
    component_id: str
    share: int = Field(ge=0)


class Stats(_Message):
    """Per component: its share, RPC server counters, co-located/inline/handoff/link counts."""

    op: Literal["stats"] = "stats"
    id: int = 0


class Usage(_Message):
    """Per component: what its calls cost here since the worker started (tally.py)."""

    op: Literal["usage"] = "usage"
    id: int = 0


class Metrics(_Message):
    """The worker's metric series (metrics.py)."""

    op: Literal["metrics"] = "metrics"
    id: int = 0


class Shutdown(_Message):
    op: Literal["shutdown"] = "shutdown"
    id: int = 0
    grace_s: float = DEFAULT_GRACE_S


Command = Annotated[Load | Unload | Scale | Stats | Usage | Metrics | Shutdown, Field(discriminator="op")]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)


def parse_command(line: bytes | str) -> Command:
    """A command line; ``ValueError`` (pydantic's ``ValidationError``) when it is not one."""
    return _COMMAND.validate_json(line)


class Ready(_Message):
    """The worker serves: its NATS connection is up and it reads commands."""

    event: Literal["ready"] = "ready"
    pid: int


class Answer(_Message):
    """The outcome of command ``id``: ``result`` when ``ok``, else ``error`` (one line)."""

    id: int
    ok: bool
    result: Any = None
    error: str = ""

    def line(self) -> bytes:
        # results hold what the worker counted (and digests, paths): anything JSON takes, as str else
        return (json.dumps(self.model_dump(), default=str) + "\n").encode()




def parse_event(line: bytes | str) -> Ready | Answer:
    """A line from a worker; ``ValueError`` when it is neither."""
    data = json.loads(line)
    if isinstance(data, dict) and data.get("event") == "ready":
        return Ready.model_validate(data)
    return Answer.model_validate(data)
