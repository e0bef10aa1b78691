"""Host settings: grouped, documented, each default with its reason."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.policy import PolicySettings

from .tuning import Tuning


def default_state_dir() -> Path:
    return Path(os.environ.get("TRELLIS_STATE_DIR", "~/.trellis")).expanduser()


class HostSettings(BaseModel):
    model_config = {"arbitrary_types_allowed": True}

    lattice: str = Field("default", description="lattice to join (TRELLIS_LATTICE)")
    nats: NatsSettings = Field(default_factory=NatsSettings)
    seed: str | None = Field(None, description="nkeys server seed; generated when unset")
    seed_file: Path | None = Field(
        None, description="where a generated seed is kept so the host keeps its id across restarts"
    )
    name: str | None = Field(None, description="friendly name; derived from the key when unset")
    labels: dict[str, str] = Field(default_factory=dict, description="user labels")
    heartbeat_interval_s: float = Field(
        1.0,
        gt=0,
        description="heartbeat period; a host silent for 3 periods is considered gone, "
        "so 1 s notices a dead host in about 3 s",
    )
    light_heartbeats: bool = Field(
        default_factory=lambda: os.environ.get("TRELLIS_LIGHT_HEARTBEATS", "1") not in ("0", "off", "false"),
        description="a heartbeat carries the whole inventory only when it changed, else its digest "
        "(TRELLIS_LIGHT_HEARTBEATS=0: every heartbeat in full)")
    stop_timeout_s: float = Field(10.0, ge=0, description="graceful drain deadline on stop")
    insecure_registries: list[str] = Field(
        default_factory=list,
        description="OCI registries (host or host:port) pulled from over plain HTTP; '*' allows every "
        "registry. Empty by default: a registry speaks TLS unless the operator says otherwise",
    )
    state_dir: Path = Field(default_factory=default_state_dir)
    compile_cache_dir: Path | None = Field(
        None, description="compiled-code cache (keyed by digest and wasmtime version); default STATE_DIR/compiled"
    )
    workers: int = Field(
        0, ge=0, description="Wasm worker processes; 0 = one per CPU (processes, not threads, scale Wasm)"
    )
    worker_threads: int = Field(
        8, ge=1, description="threads per worker, so calls blocked in imports do not stall others"
    )
    instance_allocator: Literal["on-demand", "pooling"] = Field(
        "on-demand", description="how workers allocate Wasm instances (TRELLIS_INSTANCE_ALLOCATOR): on-demand maps "
        "and unmaps each instance's memories; pooling reuses slots reserved once per worker "
        "(trellis.host.runtime.engine.InstancePool, bounded). On demand by default: the pool measured no lower "
        "CPU per call here (docs/performance.md, Cheaper instances)"
    )
    trusted_issuers: tuple[str, ...] = Field(
        (), description="issuer public keys (nkeys A…) whose signed artifacts this host runs; when set, "
        "unsigned artifacts and those of other issuers are refused (TRELLIS_TRUSTED_ISSUERS)"
    )
    policy: PolicySettings = Field(
        default_factory=PolicySettings, description="the policy service asked before starts, links and "
        "privileged control requests (TRELLIS_POLICY_*); off when it names no subject"
    )
    allow_python_providers: tuple[str, ...] = Field(
        (), description="modules this host may run as python:MODULE providers ('*' = any); python:MODULE "
        "runs code from the host's own environment, so none is allowed unless listed"
    )
    log_format: str | None = Field(None, description="text or json, for the host's workers and providers too "
                                   "(None: TRELLIS_LOG_FORMAT, else text)")
    log_to: str | None = Field(None, description="stdout or files, for the host's workers and providers too "
                               "(None: TRELLIS_LOG_TO, else as before: workers and providers to STATE_DIR/logs)")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus text at /metrics on this port (0: any free one); "
        "None: no endpoint (OTLP still follows OTEL_METRICS_EXPORTER)"
    )
    metrics_host: str = Field("127.0.0.1", description="address of the /metrics endpoint (0.0.0.0: every interface)")
    metrics_scope: str = Field(
        "host", description="host: this host's workers and providers; lattice: also every wadm controller "
        "(trellis up serves its whole embedded lattice)"
    )
    tuning: Tuning = Field(
        default_factory=Tuning.from_env, description="the data path's switches and budgets (host/tuning.py), "
        "from the TRELLIS_* variables when not given; handed to every worker at its start"
    )
