"""NATS connection settings shared by every process that connects to the lattice.

Credentials (user/password, token, nkey seed or ``.creds`` file) and TLS come
from flags or environment (``TRELLIS_NATS_*``) and are handed to nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nats-py is imported on first connect: settings and CLI help stay light
    from nats.aio.client import Client

DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass
class NatsSettings:
    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_required: bool = False
    name: str = field(default="trellis")

    ENV = {
        "url": "TRELLIS_NATS_URL",
        "user": "TRELLIS_NATS_USER",
        "password": "TRELLIS_NATS_PASSWORD",
        "token": "TRELLIS_NATS_TOKEN",
        "nkey_seed_file": "TRELLIS_NATS_NKEY",
        "creds_file": "TRELLIS_NATS_CREDS",
        "tls_ca": "TRELLIS_NATS_TLS_CA",
        "tls_cert": "TRELLIS_NATS_TLS_CERT",
        "tls_key": "TRELLIS_NATS_TLS_KEY",
    }

    @classmethod
    def from_env(cls, **overrides: Any) -> NatsSettings:
        values: dict[str, Any] = {}
        for attr, var in cls.ENV.items():
            if os.environ.get(var):
                values[attr] = os.environ[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}

    def connect_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"servers": [u.strip() for u in self.url.split(",")], "name": self.name}
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.token:
            opts["token"] = self.token
        if self.nkey_seed_file:
            opts["nkeys_seed"] = self.nkey_seed_file
        if self.creds_file:
            opts["user_credentials"] = self.creds_file
        if self.tls_ca or self.tls_cert or self.tls_required or self.url.startswith("tls://"):
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
            opts["tls"] = ctx
        return opts


#: seconds between client pings; with MAX_OUTSTANDING_PINGS unanswered *and nothing else heard
#: from the server meanwhile* (:func:`_alive_while_heard`) the connection is stale and the client
#: reconnects to another server. nats-py's defaults (120 s, 2) leave a process attached to a
#: server behind a pulled cable (no reset, only silence) for minutes.
PING_INTERVAL_S = 2
MAX_OUTSTANDING_PINGS = 2


log = logging.getLogger("trellis.nats")
_last_logged: dict[str, float] = {}


async def _log_error(exc: Exception) -> None:
    """nats-py's own error callback prints a traceback per failed (re)connect attempt, every
    half second while a server is down; log one line instead, each distinct message at most
    every 10 s."""
    text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    now = time.monotonic()
    if now - _last_logged.get(text, -1e9) >= 10.0:
        _last_logged[text] = now
        log.warning("NATS: %s", text)


class NatsUnreachable(ConnectionError):
    """No NATS server accepted the connection; says why the last attempt failed."""

    def __init__(self, url: str, last: BaseException | None) -> None:
        self.url = url
        self.last = last
        why = f"{last.__class__.__name__}: {last}" if last is not None and str(last) else (
            last.__class__.__name__ if last is not None else "no server answered")
        if isinstance(last, ConnectionRefusedError) or last is None:
            why += " (is 'trellis up' running? --nats-url or TRELLIS_NATS_URL says where)"
        elif isinstance(last, ssl.SSLCertVerificationError):
            why += " (the server's certificate is not from a CA you trust: --nats-tls-ca or TRELLIS_NATS_TLS_CA)"
        elif isinstance(last, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(last):
            why += " (the server wants a client certificate: --nats-tls-cert and --nats-tls-key)"
        super().__init__(why)


async def connect(settings: NatsSettings, *, name: str | None = None, **extra: Any) -> Client:
    opts = settings.connect_options()
    errors: list[BaseException] = []
    untrusted = asyncio.Event()  # a certificate that does not verify never will: give up at once

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        del errors[:-20]
        if isinstance(exc, ssl.SSLCertVerificationError):
            untrusted.set()
        await _log_error(exc)

    opts.setdefault("error_cb", on_error)
    if name:
        opts["name"] = name
    opts.setdefault("max_reconnect_attempts", -1)
    opts.setdefault("reconnect_time_wait", 0.5)
    opts.setdefault("connect_timeout", 2)
    opts.setdefault("ping_interval", PING_INTERVAL_S)
    opts.setdefault("max_outstanding_pings", MAX_OUTSTANDING_PINGS)
    opts.update(extra)
    import nats
    from nats.errors import NoServersError

    nc = nats.NATS()
    _alive_while_heard(nc)
    attempt = asyncio.ensure_future(nc.connect(**opts))
    gave_up = asyncio.ensure_future(untrusted.wait())
    try:
        await asyncio.wait({attempt, gave_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gave_up.cancel()
    if not attempt.done():  # nats-py would retry a certificate it cannot verify forever
        attempt.cancel()
        with contextlib.suppress(BaseException):
            await attempt
        raise NatsUnreachable(settings.url, next(e for e in reversed(errors)
                                                 if isinstance(e, ssl.SSLCertVerificationError)))
    try:
        attempt.result()
        return nc
    except NoServersError:
        # what the server said (e.g. 'Authorization Violation') beats the reset that follows it
        said = [e for e in errors if not isinstance(e, OSError)]
        tried = said or errors
        raise NatsUnreachable(settings.url, tried[-1] if tried else None) from None


def _alive_while_heard(nc: Client) -> None:
    """Count every byte from the server as a sign of life, as nats-server does for its clients
    ("delaying PING due to client activity"), not only the PONGs to the client's pings.

    nats-py calls a connection stale after MAX_OUTSTANDING_PINGS pings without a PONG. A PONG
    comes after everything the server queued for the client before it, so a process reading
    megabytes (a large body, in whole messages or streamed) on a slowed loop (a loaded machine, a
    Wasm thread holding the GIL) got its PONG seconds late though the server never stopped
    talking; it dropped a healthy connection, and with it the replies and stream frames in flight
    (a worker's 2.7 MB reply lost: 503/504 at the HTTP front). A server gone silent (a pulled
    cable) is still noticed after the same pings, since then nothing at all arrives.
    """
    parser: Any = getattr(nc, "_ps", None)  # nats-py's protocol parser: the read loop feeds it every read
    if not hasattr(parser, "parse") or not hasattr(nc, "_pings_outstanding"):  # another nats-py: its own rule
        return
    parse = parser.parse

    async def heard(data: bytes = b"") -> None:
        if data:
            nc._pings_outstanding = 0
        await parse(data)

    parser.parse = heard


async def goodbye(nc: Client, timeout_s: float = 5.0) -> None:
    """Leave NATS: drain (pending replies and publishes go out) while connected, else just close.

    Draining a connection whose server is gone waits the whole timeout for nothing: a process
    whose NATS died with its parent (`trellis up` SIGKILLed) must go at once.
    """
    if nc.is_closed:
        return
    if nc.is_connected:
        try:
            await asyncio.wait_for(nc.drain(), timeout_s)
            return
        except Exception:
            pass
    try:
        await nc.close()
    except Exception:
        pass
