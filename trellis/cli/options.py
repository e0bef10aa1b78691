"""Connection options every lattice command accepts (flags or TRELLIS_* environment)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from trellis.interfaces.connection import DEFAULT_URL, NatsSettings

PANEL = "Lattice connection"


@dataclass
class Conn:
    """What a command needs to reach a lattice."""

    nats: NatsSettings
    lattice: str


# (parameter name, environment variable, help, default)
_CONN_OPTIONS: list[tuple[str, str, str, str | None]] = [
    ("nats_url", "TRELLIS_NATS_URL", "NATS server URL(s), comma separated", DEFAULT_URL),
    ("lattice", "TRELLIS_LATTICE", "lattice name", "default"),
    ("nats_user", "TRELLIS_NATS_USER", "NATS user", None),
    ("nats_password", "TRELLIS_NATS_PASSWORD", "NATS password", None),
    ("nats_token", "TRELLIS_NATS_TOKEN", "NATS token", None),
    ("nats_nkey", "TRELLIS_NATS_NKEY", "file holding an nkey seed", None),
    ("nats_creds", "TRELLIS_NATS_CREDS", "NATS .creds file (JWT + seed)", None),
    ("nats_tls_ca", "TRELLIS_NATS_TLS_CA", "CA certificate to trust for TLS", None),
    ("nats_tls_cert", "TRELLIS_NATS_TLS_CERT", "client certificate for TLS", None),
    ("nats_tls_key", "TRELLIS_NATS_TLS_KEY", "client key for TLS", None),
]
_CONN_NAMES = [name for name, *_ in _CONN_OPTIONS]


def _param(name: str, envvar: str, help: str, default: str | None) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, f"--{name.replace('_', '-')}", envvar=envvar, help=help,
                             rich_help_panel=PANEL),
        annotation=str if default is not None else str | None,
    )


def conn_from(values: dict[str, Any]) -> Conn:
    settings = NatsSettings(
        url=values["nats_url"],
        user=values["nats_user"],
        password=values["nats_password"],
        token=values["nats_token"],
        nkey_seed_file=values["nats_nkey"],
        creds_file=values["nats_creds"],
        tls_ca=values["nats_tls_ca"],
        tls_cert=values["nats_tls_cert"],
        tls_key=values["nats_tls_key"],
    )
    return Conn(nats=settings, lattice=values["lattice"])


def with_conn(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the connection flags; it receives them as ``conn: Conn``."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "conn"]
    params += [_param(*opt) for opt in _CONN_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        conn = conn_from({k: kwargs.pop(k) for k in _CONN_NAMES})
        return fn(*args, conn=conn, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # functions take __signature__; typeshed does not say so
    return wrapper
