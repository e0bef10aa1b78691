"""Which NATS server a NATS-backed provider talks to, and connecting to it.

By default the lattice's own: the server and credentials the host gave the
provider in its bootstrap. Config key ``url`` (with ``user``/``password``,
``token``, ``creds_file``, ``nkey_seed_file``, ``tls_ca``/``tls_cert``/``tls_key``)
names another one.

On the lattice's server the names Trellis itself uses are off limits to
components: subjects under ``trellis.`` (control, events, invocations) and
``$`` (JetStream and system APIs), and JetStream buckets named ``TRELLIS_…``
(links, config, artifacts). A component that could publish there could stop
hosts or rewrite links.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from trellis.interfaces.connection import NatsSettings, connect
from trellis.interfaces.subjects import ROOT
from trellis.providers.sdk import NatsBootstrap, nats_connection

from .config import ConfigError, text

log = logging.getLogger("trellis.providers.builtin")

#: config keys that select and authenticate a NATS server other than the lattice's
NATS_KEYS = ("url", "user", "password", "token", "creds_file", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key")
#: first connection attempts before a use fails (later drops reconnect for ever)
CONNECT_ATTEMPTS = 3

_RESERVED_SUBJECT_PREFIXES = (f"{ROOT}.", "$")
_RESERVED_BUCKET_PREFIX = f"{ROOT.upper()}_"


@dataclass(frozen=True)
class NatsTarget:
    """A NATS server and credentials; equal targets share one connection."""

    settings: tuple[tuple[str, Any], ...]
    #: inline secrets from the bootstrap (``creds``, ``nkey_seed``)
    secrets: tuple[tuple[str, str], ...] = ()
    #: the lattice's own server: reserved subjects and buckets apply
    is_lattice: bool = False

    @property
    def url(self) -> str:
        return str(dict(self.settings).get("url", ""))

    def describe(self) -> str:
        shown = ",".join(re.sub(r"//[^@/]*@", "//***@", u) for u in self.url.split(","))
        return f"{shown} (lattice)" if self.is_lattice else shown

    def __repr__(self) -> str:  # never a password or token in logs
        return f"NatsTarget({self.describe()})"


def lattice_nats(info: Any) -> NatsBootstrap | None:
    """How this instance reached the lattice's NATS (``info.nats``); None outside a lattice (unit tests)."""
    nats: NatsBootstrap | None = info.nats
    return nats


def nats_target(cfg: Mapping[str, str], lattice: NatsBootstrap | None) -> NatsTarget:
    """The server ``cfg`` names, or the lattice's; raises ConfigError when there is neither."""
    url = text(cfg, "url")
    if url is not None:
        fields = {k: text(cfg, k) for k in NATS_KEYS}
        return NatsTarget(tuple(sorted((k, v) for k, v in fields.items() if v is not None)))
    if lattice is None:
        raise ConfigError("no NATS server: give url=nats://HOST:PORT (the lattice's is unknown here)")
    s = lattice.settings("x")
    settings = {k: v for k, v in vars(s).items() if k != "name" and v not in (None, False)}
    secrets = {k: getattr(lattice, k) for k in ("creds", "nkey_seed") if getattr(lattice, k, None)}
    return NatsTarget(tuple(sorted(settings.items())), tuple(sorted(secrets.items())), is_lattice=True)


#: connections open_nats lent out rather than opened: the provider runtime's own (close_nats leaves them)
_borrowed: weakref.WeakSet[Client] = weakref.WeakSet()


async def open_nats(target: NatsTarget, name: str, *, share_lattice: bool = False) -> Client:
    """Connect (a few attempts), then reconnect for ever after any later drop.

    With ``share_lattice``, the lattice's own server is reached over the connection
    the provider runtime already has (the same server and credentials, from the
    bootstrap) when there is one: no second socket, and what a handler publishes
    leaves in the same write as the reply to its call.
    """
    if share_lattice and target.is_lattice:
        own = nats_connection()
        if own is not None and not own.is_closed:
            _borrowed.add(own)
            return own
    settings = NatsSettings(**dict(target.settings), name=name)
    extra: dict[str, Any] = {}
    secrets = dict(target.secrets)
    if secrets.get("creds"):
        from nats.aio.client import RawCredentials

        extra["user_credentials"] = RawCredentials(secrets["creds"])
    if secrets.get("nkey_seed"):
        extra["nkeys_seed_str"] = secrets["nkey_seed"]

    async def on_error(exc: Exception) -> None:
        log.warning("%s: NATS %s: %s", name, target.describe(), exc or exc.__class__.__name__)

    async def on_disconnected() -> None:
        log.info("%s: disconnected from NATS %s", name, target.describe())

    async def on_reconnected() -> None:
        log.info("%s: reconnected to NATS %s", name, target.describe())

    nc = await connect(settings, name=name, max_reconnect_attempts=CONNECT_ATTEMPTS, error_cb=on_error,
                       disconnected_cb=on_disconnected, reconnected_cb=on_reconnected, **extra)
    nc.options["max_reconnect_attempts"] = -1
    return nc


async def close_nats(nc: Client) -> None:
    if nc in _borrowed:
        return  # the provider runtime's: it drains it when it stops
    if not nc.is_closed:
        try:
            await nc.drain()
        except Exception:
            await nc.close()


def reserved_subject(subject: str) -> bool:
    """Whether a subject (or a subscription pattern) may touch Trellis's own traffic."""
    first = subject.split(".", 1)[0]
    return subject.startswith(_RESERVED_SUBJECT_PREFIXES) or first in (ROOT, ">", "*")


def reserved_bucket(name: str) -> bool:
    return name.upper().startswith(_RESERVED_BUCKET_PREFIX)
