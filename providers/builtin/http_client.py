"""``builtin:http-client``: ``trellis:http/outgoing-handler.send`` for components (docs/http.md).

A component linked to this provider (``trellis link put COMPONENT http-client
trellis http --interface outgoing-handler``) sends whole requests and gets
whole responses back; a ``wasi:http`` component linked for ``wasi http
--interface outgoing-handler`` gets the same through its host, with failures
as ``error-code`` cases (the host calls ``wasi:http/outgoing-handler.send``), over one pooled
``httpx.AsyncClient`` per provider process. Every way of not getting a response is ``err(text)``, never a trap:
an invalid URL, a refused destination, a failed connection, the timeout, too
many redirects, a response over the size limit.

Config: the link's ``target_config`` over the provider's own config.

``timeout_ms``          the whole exchange, redirects included, unless the request's
                        options say otherwise; never past the caller's deadline.
                        Default 30 000.
``max_response_bytes``  largest response body (as received, not decompressed).
                        Default and ceiling 2,600,000 bytes (~2.5 MiB), the most one
                        call can carry into a component (``trellis.interfaces.wasm_limits``),
                        and never more than the lattice's message limit allows
                        (NATS ``max_payload``).
``max_redirects``       redirects followed when the options ask to. Default 10.
``allowed_hosts``       comma-separated host names (``*.example.com`` for subdomains)
                        the component may reach, redirects included. Default: any.

The body is passed as received (no decompression: the provider asks for no
encoding unless the component's headers do); ``content-length`` and
``transfer-encoding`` from the component are recomputed; no cookies are kept
between requests.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from trellis.interfaces.envelope import ENVELOPE_ROOM
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL
from trellis.kit.natsstream import StreamHub
from trellis.providers.sdk import Context, Provider, ProviderInfo, nats_connection, run

from . import http_client_wasi
from ._common.config import ConfigError
from .http_client_wasi import Refused as _Refused

log = logging.getLogger("trellis.providers.http_client")

NAME = "http-client"
INTERFACE = "trellis:http/outgoing-handler"
#: what a wasi:http component's host calls for its ``wasi:http/outgoing-handler`` (docs/components.md)
WASI_INTERFACE = "wasi:http/outgoing-handler"
#: time kept back from the caller's deadline, so a timeout is an err the component sees, not a trap
DEADLINE_MARGIN_S = 0.05
_DROP = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_KEYS = frozenset({"timeout_ms", "max_response_bytes", "max_redirects", "allowed_hosts"})


@dataclass(frozen=True)
class Settings:
    timeout_ms: int = 30_000
    max_response_bytes: int = MAX_BYTES_PER_CALL
    max_redirects: int = 10
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> Settings:
        unknown = sorted(k for k in values if k not in _KEYS)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")

        def number(key: str, default: int, low: int) -> int:
            raw = values.get(key)
            if raw is None:
                return default
            try:
                value = int(raw.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key}={raw!r}: expected a whole number") from None
            if value < low:
                raise ConfigError(f"{key}={raw!r}: must be at least {low}")
            return value

        hosts = tuple(h.strip().lower() for h in values.get("allowed_hosts", "").split(",") if h.strip())
        return cls(timeout_ms=number("timeout_ms", cls.timeout_ms, 1),
                   max_response_bytes=number("max_response_bytes", cls.max_response_bytes, 0),
                   max_redirects=number("max_redirects", cls.max_redirects, 0), allowed_hosts=hosts)

    def allows(self, host: str) -> bool:
        if not self.allowed_hosts:
            return True
        host = host.lower()
        return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.allowed_hosts)


class HttpClient:
    """The provider's state: one pooled client for every component."""

    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.max_payload: int | None = None
        #: byte streams for wasi:http components' bodies (``http_client_wasi.py``); None without a lattice
        self.hub: StreamHub | None = None
        self.defaults: dict[str, str] = {}  # the provider's own config
        self._settings: dict[tuple[tuple[str, str], ...], Settings | ConfigError] = {}

    def settings(self, link_config: Mapping[str, str]) -> Settings:
        """The link's config over the provider's own (parsed once per distinct config)."""
        key = tuple(sorted({**self.defaults, **link_config}.items()))
        found = self._settings.get(key)
        if found is None:
            try:
                found = Settings.parse(dict(key))
            except ConfigError as exc:
                found = exc
            if len(self._settings) > 1024:
                self._settings.clear()
            self._settings[key] = found
        if isinstance(found, ConfigError):
            raise found
        return found

    async def config_updated(self, name: str, values: dict[str, str], *, info: ProviderInfo,
                             **kwargs: Any) -> None:
        self.defaults = dict(info.config)

    async def start(self, *, info: ProviderInfo, **kwargs: Any) -> None:
        self.defaults = dict(info.config)
        nc = nats_connection()
        self.max_payload = getattr(nc, "max_payload", None) if nc is not None else None
        if nc is not None:
            self.hub = await StreamHub(nc, info.lattice).start()
        jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.client = httpx.AsyncClient(
            follow_redirects=False, cookies=jar, trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30),
            headers={"user-agent": "trellis-http-client/0.1"},
        )
        del self.client.headers["accept-encoding"]  # bodies travel as received: ask for no encoding

    async def shutdown(self, grace_s: float, **kwargs: Any) -> None:
        if self.hub is not None:
            await self.hub.close("the http-client provider is stopping")
            self.hub = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def health(self, **kwargs: Any) -> tuple[bool, str]:
        return self.client is not None, "ready" if self.client is not None else "not started"

    async def send(self, request: dict[str, Any], options: dict[str, Any] | None, *, ctx: Context,
                   **kwargs: Any) -> dict[str, Any]:
        """``outgoing-handler.send(request, options) -> result<response, string>``."""
        try:
            settings = self.settings(ctx.config)
        except ConfigError as exc:
            return {"err": f"http-client is misconfigured for this link: {exc}"}
        timeout_s = settings.timeout_ms / 1000
        if options and options.get("timeout-ms") is not None:
            timeout_s = options["timeout-ms"] / 1000
        timeout_s = min(timeout_s, ctx.remaining_s() - DEADLINE_MARGIN_S)
        if timeout_s <= 0:
            return {"err": "no time left before the caller's deadline"}
        follow = bool(options and options.get("follow-redirects"))
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._exchange(request, settings, follow, timeout_s)
        except TimeoutError:
            return {"err": f"timed out after {timeout_s * 1000:.0f} ms"}
        except _Refused as exc:
            return {"err": str(exc)}
        except httpx.HTTPError as exc:
            return {"err": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}
        return {"ok": response}

    async def send_wasi(self, request: dict[str, Any], options: dict[str, Any] | None, *, ctx: Context,
                        **kwargs: Any) -> dict[str, Any]:
        """``send`` for a ``wasi:http`` component (its host sends ``wasi:http/outgoing-handler.send``):
        streamed bodies, the request's timeouts and ``error-code`` cases (``http_client_wasi.py``)."""
        return await http_client_wasi.send_wasi(self, request, options, ctx=ctx)

    def response_limit(self, request: dict[str, Any]) -> int:
        """The most response body one reply carries into the calling component."""
        limit = MAX_BYTES_PER_CALL  # more would trap the caller
        if self.max_payload:
            limit = min(limit, max(0, self.max_payload - ENVELOPE_ROOM))
        return limit

    async def _exchange(self, request: dict[str, Any], settings: Settings, follow: bool,
                        timeout_s: float) -> dict[str, Any]:
        assert self.client is not None, "http-client is not started"
        try:
            url = httpx.URL(request["url"])
        except (httpx.InvalidURL, TypeError) as exc:
            raise _Refused(f"invalid URL {request.get('url')!r:.200}: {exc}", "http-request-uri-invalid") from None
        http_client_wasi.check_destination(url, settings)
        headers = request_headers(request)
        body = bytes(request["body"])
        try:
            req = self.client.build_request(request["method"], url, headers=headers, content=body or None,
                                            timeout=httpx.Timeout(timeout_s))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            raise _Refused(f"cannot send {request.get('method')!r:.20} {request.get('url')!r:.200}: {exc}",
                           "http-request-uri-invalid") from None
        limit = min(settings.max_response_bytes, MAX_BYTES_PER_CALL)  # more would trap the caller
        if self.max_payload:
            limit = min(limit, max(0, self.max_payload - ENVELOPE_ROOM))
        redirects = 0
        while True:
            http_client_wasi.check_destination(req.url, settings)
            response = await self.client.send(req, stream=True)
            try:
                next_request = response.next_request if follow else None
                if next_request is None:
                    return {"status": response.status_code, "headers": response_headers(response),
                            "body": await read_limited(response, limit)}
            finally:
                await response.aclose()
            redirects += 1
            if redirects > settings.max_redirects:
                raise _Refused(f"more than {settings.max_redirects} redirects (last to {next_request.url})",
                               "loop-detected")
            req = next_request


def request_headers(request: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """A component's request headers as sent: its framing headers are recomputed."""
    headers = [(name.encode("latin-1") if isinstance(name, str) else name, bytes(value))
               for name, value in request["headers"]]
    return [(n, v) for n, v in headers if n.lower() not in _DROP]


def response_headers(response: httpx.Response) -> list[list[Any]]:
    return [[name.decode("latin-1").lower(), value] for name, value in response.headers.raw]


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(f"the response body is {declared} bytes, over the limit of {limit}",
                       "http-response-body-size", int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise _Refused(f"the response body exceeds the limit of {limit} bytes", "http-response-body-size")
        chunks.append(chunk)
    return b"".join(chunks)


def build(state: HttpClient | None = None) -> Provider:
    """A fresh provider (tests build their own)."""
    state = state or HttpClient()
    provider = Provider(NAME, description="outgoing HTTP for components: trellis:http/outgoing-handler.send",
                        max_concurrent=256)

    @provider.export(INTERFACE, "send")
    async def send(request: dict[str, Any], options: dict[str, Any] | None, *, ctx: Context,
                   **kwargs: Any) -> dict[str, Any]:
        return await state.send(request, options, ctx=ctx)

    @provider.export(WASI_INTERFACE, "send")
    async def send_wasi(request: dict[str, Any], options: dict[str, Any] | None, *, ctx: Context,
                     **kwargs: Any) -> dict[str, Any]:
        return await state.send_wasi(request, options, ctx=ctx)

    provider.on_start(state.start)
    provider.on_config_updated(state.config_updated)
    provider.on_shutdown(state.shutdown)
    provider.health(state.health)
    return provider


provider = build()

if __name__ == "__main__":
    run(provider)
