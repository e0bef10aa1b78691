"""The bootstrap: everything a provider process needs to join a lattice, as one JSON document.

A host spawns a provider with a clean environment and writes the bootstrap to
the provider's **stdin** (one JSON object; the provider reads until the object
is complete, so a single line or pretty-printed JSON followed by EOF both work).
For development, :func:`bootstrap_from_args` builds one from command-line flags.

Unknown fields are ignored, so a newer host can add fields older providers skip.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import time
import uuid
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trellis.interfaces import subjects
from trellis.interfaces.connection import DEFAULT_URL, NatsSettings
from trellis.interfaces.lattice_config import LatticeConfigError, check_config_name, check_config_values, parse_pairs
from trellis.interfaces.links import Link, validation_message
from trellis.interfaces.secrets import SecretValue
from trellis.kit import gc_tuning

BOOTSTRAP_VERSION = 1


class BootstrapError(ValueError):
    """The bootstrap is missing, not JSON, or invalid; the message says which field."""


class NatsBootstrap(BaseModel):
    """How to reach NATS. File paths must exist on the provider's machine; ``creds`` and
    ``nkey_seed`` carry secrets inline so the host need not write them to disk."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(default=DEFAULT_URL, description="NATS server URL(s), comma separated")
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_required: bool = False
    creds: str | None = Field(default=None, description="contents of a .creds file (JWT + seed)")
    nkey_seed: str | None = Field(default=None, description="an nkey seed (S…)")

    def settings(self, name: str) -> NatsSettings:
        return NatsSettings(
            url=self.url, user=self.user, password=self.password, token=self.token,
            nkey_seed_file=self.nkey_seed_file, creds_file=self.creds_file, tls_ca=self.tls_ca,
            tls_cert=self.tls_cert, tls_key=self.tls_key, tls_required=self.tls_required, name=name,
        )

    def connect_extra(self) -> dict[str, Any]:
        """nats-py options for the inline secrets."""
        from nats.aio.client import RawCredentials

        extra: dict[str, Any] = {}
        if self.creds:
            extra["user_credentials"] = RawCredentials(self.creds)
        if self.nkey_seed:
            extra["nkeys_seed_str"] = self.nkey_seed
        return extra


class Bootstrap(BaseModel):
    """What the host tells a provider when it starts it."""

    model_config = ConfigDict(extra="ignore")

    version: int = Field(default=BOOTSTRAP_VERSION, description="bootstrap schema version")
    lattice: str = Field(default="default", description="lattice to join")
    provider_id: str = Field(description="the id this provider serves invocations for (its queue group)")
    host_id: str = Field(default="dev", description="the host that started this instance")
    instance_id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="this process")
    nats: NatsBootstrap = Field(default_factory=lambda: NatsBootstrap())
    config: dict[str, str] = Field(default_factory=dict, description="inline config, under the named ones")
    config_names: list[str] = Field(default_factory=list, description="the provider's own named configs, in order")
    configs: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="values of named configs the provider uses (its own and its links'); "
                    "names missing here are read from the lattice at start")
    links: list[Link] = Field(default_factory=list, description="links with this provider as source or target")
    log_level: str = Field(default="info", description="logging level of the provider process")
    state_dir: str | None = Field(default=None, description="the host's state directory (files a provider keeps)")
    local_workers: list[str] = Field(
        default_factory=list, description="abstract Unix socket names of the host's worker processes, which take "
                                          "connections handed to them (trellis/samehost/handoff.py)")
    shutdown_grace_s: float = Field(default=10.0, ge=0, description="how long in-flight calls may take to finish on "
                                                            "SIGTERM; the host kills after this plus a margin")
    max_concurrent: int | None = Field(default=None, ge=1, description="overrides the provider's own limit")
    gc_threshold: int | None = Field(
        default_factory=gc_tuning.threshold_from_env, ge=1,
        description="allocations between young-generation collections once started (None: Python's own); "
                    "the host's tuning.process.gc_threshold, else TRELLIS_GC_THRESHOLD (trellis/kit/gc_tuning.py)")
    otel: dict[str, str] = Field(default_factory=dict,
                                 description="OTEL_* variables for tracing (the environment is clean)")
    secrets: dict[str, dict[str, str]] = Field(
        default_factory=dict, repr=False,
        description="the provider's secrets (its manifest `secrets:`), by name, as {\"string\": v} or "
                    "{\"bytes\": base64}: fetched by the host, sealed, from the keyholder; never on the "
                    "command line or in the environment")

    def secret_values(self) -> dict[str, SecretValue]:
        return {name: SecretValue.from_wire(v) for name, v in self.secrets.items()}

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > BOOTSTRAP_VERSION:
            raise ValueError(f"bootstrap version {v} is newer than this SDK understands ({BOOTSTRAP_VERSION})")
        return v

    @field_validator("lattice")
    @classmethod
    def _lattice(cls, v: str) -> str:
        return subjects.check_lattice(v)

    @field_validator("provider_id", "host_id")
    @classmethod
    def _ids(cls, v: str, info: Any) -> str:
        return subjects.check_id(info.field_name.removesuffix("_id"), v)

    @field_validator("config_names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        try:
            for n in v:
                check_config_name(n)
        except LatticeConfigError as exc:
            raise ValueError(exc.message) from None
        return v

    @field_validator("configs")
    @classmethod
    def _configs(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        try:
            return {check_config_name(n): check_config_values(n, vals) for n, vals in v.items()}
        except LatticeConfigError as exc:
            raise ValueError(exc.message) from None

    @classmethod
    def parse(cls, data: str | bytes | dict[str, Any]) -> Bootstrap:
        try:
            raw = json.loads(data) if isinstance(data, (str, bytes)) else data
        except ValueError as exc:
            raise BootstrapError(f"bootstrap is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise BootstrapError(f"bootstrap must be a JSON object, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise BootstrapError(f"invalid bootstrap: {validation_message(exc)}") from None
        except ValueError as exc:
            raise BootstrapError(f"invalid bootstrap: {exc}") from None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def read_bootstrap(stream: IO[bytes], timeout_s: float = 30.0) -> Bootstrap:
    """Read one JSON object from ``stream`` (the host writes it, then may close the pipe)."""
    try:
        fd: int | None = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None:  # an in-memory stream (tests)
        data = stream.read()
        if not data.strip():
            raise BootstrapError("no bootstrap was written")
        return Bootstrap.parse(data)
    deadline = time.monotonic() + timeout_s
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise BootstrapError(f"no complete bootstrap on stdin within {timeout_s}s")
        chunk = os.read(fd, 65536)
        if not chunk:
            if not buf.strip():
                raise BootstrapError("stdin closed before a bootstrap was written")
            return Bootstrap.parse(buf)
        buf += chunk
        try:
            json.loads(buf)
        except ValueError:
            continue  # not complete yet
        return Bootstrap.parse(buf)


def arg_parser(prog: str, provider_name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=f"Run provider {provider_name!r}. Without arguments and with stdin not a terminal, "
                    "the bootstrap JSON is read from stdin (how a host starts it).",
    )
    p.add_argument("--bootstrap", metavar="FILE", help="read the bootstrap JSON from FILE ('-' for stdin)")
    p.add_argument("--nats-url", default=os.environ.get("TRELLIS_NATS_URL", DEFAULT_URL))
    p.add_argument("--lattice", default=os.environ.get("TRELLIS_LATTICE", "default"))
    p.add_argument("--provider-id", default=provider_name, help="default: the provider's name")
    p.add_argument("--host-id", default="dev", help="who runs it (default: dev)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="inline config (repeatable)")
    p.add_argument("--config-name", action="append", default=[], metavar="NAME",
                   help="named config to use (repeatable, later wins)")
    p.add_argument("--log-level", default=os.environ.get("TRELLIS_LOG_LEVEL", "info"))
    p.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get on shutdown")
    return p


def bootstrap_from_args(args: argparse.Namespace) -> Bootstrap:
    """A bootstrap for running by hand; credentials come from TRELLIS_NATS_* like the CLI's."""
    env = NatsSettings.from_env(url=args.nats_url)
    nats = {k: v for k, v in env.to_dict().items() if k != "name"}
    try:
        config = parse_pairs(args.config)
    except LatticeConfigError as exc:
        raise BootstrapError(exc.message) from None
    return Bootstrap.parse({
        "lattice": args.lattice, "provider_id": args.provider_id, "host_id": args.host_id, "nats": nats,
        "config": config, "config_names": args.config_name, "log_level": args.log_level,
        "shutdown_grace_s": args.grace,
    })
