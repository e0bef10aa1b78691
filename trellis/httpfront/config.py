"""The HTTP front's settings: what a link's config and the provider's own config may say.

Pure parsing and validation, no I/O. Every value is a string on the lattice;
units are in the key (``_ms``, ``_bytes``). A bad value or an unknown key is an
error naming the key, so a typo (``adress``) never silently falls back to a
default.

Per link (the link's ``source_config``; the provider's own config gives defaults):

``address``            ``HOST:PORT`` to listen on (``[::1]:8080`` for IPv6). Default
                       ``127.0.0.1:8000``: loopback unless asked, like wasmCloud.
``host``               serve only requests whose ``Host`` is this name (port
                       ignored, case-insensitive); ``*.example.com`` matches any
                       subdomain. Default: any host.
``path``               serve only paths under this prefix (``/api`` matches ``/api``,
                       ``/api/…`` and ``/api?…``, not ``/apix``). Default ``/``.
``timeout_ms``         the whole call to the component; past it: 504. Default 30 000.
``max_body_bytes``     largest request body; past it: 413. Default 2,600,000 bytes
                       (~2.5 MiB), the most one call carries into a component
                       (``trellis.interfaces.wasm_limits``). A larger value (up to 64 MiB)
                       lets larger bodies through to components that read them in
                       pieces (``trellis:http/request-body``); others answer 413. A body
                       streamed to a ``wasi:http`` component (``streaming.py``) has no
                       bound unless this is set (then up to 1 GiB).
``instance_wait_ms``   how long a request waits for an instance of the component when
                       none answers (nothing serves it, or all are busy); past it: 503.
                       Default 2 000 (a rolling update leaves short gaps).

The provider's own config only (one value for every listener):

``idle_timeout_ms``    a keep-alive connection with no request is closed after this.
                       Default 60 000.
``read_timeout_ms``    a request must arrive whole (headers and body) within this
                       once it has begun; past it: 408. Default 30 000.
``max_header_bytes``   request line plus headers; past it: 431. Default 64 KiB.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from trellis.interfaces.envelope import MAX_BODY
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

DEFAULT_ADDRESS = "127.0.0.1:8000"
MIB = 1024 * 1024
TIMEOUT_MS = 30_000
MAX_BODY_BYTES = MAX_BYTES_PER_CALL
#: the most ``max_body_bytes`` lets through
MAX_BODY_CEILING = MAX_BODY
INSTANCE_WAIT_MS = 2_000
IDLE_TIMEOUT_MS = 60_000
READ_TIMEOUT_MS = 30_000
MAX_HEADER_BYTES = 64 * 1024

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$")
_PATH = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")


class RouteConfigError(ValueError):
    """A config value the HTTP front cannot use; the message names the key."""


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """How one link is served."""

    address: tuple[str, int]
    host: str | None = None  # lower-case; may start with "*."
    path: str = "/"
    timeout_ms: int = TIMEOUT_MS
    max_body_bytes: int = MAX_BODY_BYTES
    instance_wait_ms: int = INSTANCE_WAIT_MS
    #: whether ``max_body_bytes`` was given (a streamed body is bounded only then)
    max_body_set: bool = False

    @property
    def address_text(self) -> str:
        return format_address(self.address)

    @property
    def body_limit(self) -> int:
        """The request body limit in force: ``max_body_bytes``, held to what a reply frame holds."""
        return min(self.max_body_bytes, MAX_BODY_CEILING)

    @property
    def stream_limit(self) -> int | None:
        """The bound of a request body streamed to its component (``streaming.py``): none, unless
        ``max_body_bytes`` is set (up to 1 GiB)."""
        return self.max_body_bytes if self.max_body_set else None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings shared by every listener of one provider instance."""

    idle_timeout_ms: int = IDLE_TIMEOUT_MS
    read_timeout_ms: int = READ_TIMEOUT_MS
    max_header_bytes: int = MAX_HEADER_BYTES


ROUTE_KEYS = frozenset({"address", "host", "path", "timeout_ms", "max_body_bytes", "instance_wait_ms"})
SERVER_KEYS = frozenset({"idle_timeout_ms", "read_timeout_ms", "max_header_bytes"})


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:8080``, ``[::1]:8080``, ``localhost:8080``, ``0.0.0.0:80`` → (host, port)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise RouteConfigError(f"address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise RouteConfigError(f"address {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise RouteConfigError(f"address {text!r}: write IPv6 addresses in brackets, e.g. [::1]:8080")
    try:
        port = int(port_text)
    except ValueError:
        raise RouteConfigError(f"address {text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise RouteConfigError(f"address {text!r}: port must be 1-65535")
    return host, port


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _int(values: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        value = int(raw.replace("_", "").strip())
    except ValueError:
        raise RouteConfigError(f"{key}={raw!r}: expected a whole number") from None
    if not low <= value <= high:
        raise RouteConfigError(f"{key}={raw!r}: must be between {low} and {high}")
    return value


def _check_keys(values: Mapping[str, str], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        keys = ", ".join(map(repr, unknown))
        raise RouteConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {keys} in {where} "
                               f"(known: {', '.join(sorted(allowed))})")


def parse_route(link_config: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> RouteConfig:
    """A link's config over the provider's defaults (its own config's route keys)."""
    _check_keys(link_config, ROUTE_KEYS, "the link's config")
    values = {k: v for k, v in (defaults or {}).items() if k in ROUTE_KEYS}
    values.update(link_config)
    host = values.get("host", "").strip().lower() or None
    if host is not None and not _HOST.match(host):
        raise RouteConfigError(f"host={values['host']!r}: expected a host name such as example.com or *.example.com")
    path = values.get("path", "/").strip() or "/"
    if not _PATH.match(path):
        raise RouteConfigError(f"path={values['path']!r}: expected a path starting with '/', e.g. /api")
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return RouteConfig(
        address=parse_address(values.get("address", DEFAULT_ADDRESS)),
        host=host,
        path=path,
        timeout_ms=_int(values, "timeout_ms", TIMEOUT_MS, 1, 3_600_000),
        max_body_bytes=_int(values, "max_body_bytes", MAX_BODY_BYTES, 0, 1024 * MIB),
        instance_wait_ms=_int(values, "instance_wait_ms", INSTANCE_WAIT_MS, 0, 3_600_000),
        max_body_set="max_body_bytes" in values,
    )


def parse_server(own_config: Mapping[str, str]) -> ServerConfig:
    """The provider's own config: server keys, plus route keys (defaults for every link)."""
    _check_keys(own_config, ROUTE_KEYS | SERVER_KEYS, "the provider's config")
    return ServerConfig(
        idle_timeout_ms=_int(own_config, "idle_timeout_ms", IDLE_TIMEOUT_MS, 1, 86_400_000),
        read_timeout_ms=_int(own_config, "read_timeout_ms", READ_TIMEOUT_MS, 1, 86_400_000),
        max_header_bytes=_int(own_config, "max_header_bytes", MAX_HEADER_BYTES, 1024, 16 * MIB),
    )
