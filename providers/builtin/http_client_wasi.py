"""``builtin:http-client`` for ``wasi:http`` components: streamed bodies, the request's timeouts, error codes.

A ``wasi:http`` component's host sends ``wasi:http/outgoing-handler.send(request, options)`` with the
records ``trellis:http`` uses, and three optional additions (docs/http.md, "Calling out"):

* ``request["body-stream"]``: the host's sender offer (``interfaces/bytestream.py``); ``body`` then
  holds only the start of the body, the rest comes on the stream as the component writes it and
  goes upstream as it comes (an upload of any size, in bounded memory);
* ``request["response-stream"]``: the host's receiver offer; a response body larger than
  :data:`WHOLE_BYTES` (or still arriving) is answered early, as ``{"ok": {status, headers, body:
  start, "stream": true}}``, and the rest streamed to the host as upstream sends it;
* ``options``: ``connect-timeout-ms``, ``first-byte-timeout-ms`` (from the request sent to the
  response's head) and ``between-bytes-timeout-ms`` (between two reads of the response body),
  the component's ``request-options``; the link's ``timeout_ms`` bounds the whole exchange.

Every way of not getting a response is ``{"err": {case: payload}}``, a ``wasi:http`` ``error-code``
case (lower case; the host renames it to the component's spelling); a failure after the head
aborts the response stream with the case first in its reason (``"connection-read-timeout: …"``),
which the component's body read gets as that error code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from trellis.interfaces.bytestream import StreamError, read_offer
from trellis.interfaces.rpc_server import EARLY_REPLY
from trellis.providers.sdk import Context

from ._common.config import ConfigError

if TYPE_CHECKING:
    from trellis.kit.natsstream import Receiver

    from .http_client import HttpClient, Settings

log = logging.getLogger("trellis.providers.http_client")

#: a response body up to this size (and complete at once) goes back in the reply itself
WHOLE_BYTES = 64 * 1024
#: time kept back from the caller's deadline, so a timeout is an error code, not a trap
DEADLINE_MARGIN_S = 0.05


class Refused(Exception):
    """No response: ``code`` is the ``error-code`` case (lower case), ``payload`` its value."""

    def __init__(self, message: str, code: str = "internal-error", payload: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.payload = message if code == "internal-error" and payload is None else payload


def _ms(options: dict[str, Any] | None, key: str) -> float | None:
    value = (options or {}).get(key)
    return value / 1000 if isinstance(value, (int, float)) and value > 0 else None


async def _body(first: bytes, rx: Receiver | None) -> AsyncIterator[bytes]:
    if first:
        yield first
    if rx is None:
        return
    while True:
        try:
            piece = await rx.read()
        except StreamError as exc:  # the component's side failed or went away: the upload is cut short
            raise Refused(f"the request body broke off: {exc}", "http-request-body-size") from None
        if piece is None:
            return
        yield piece


async def send_wasi(state: HttpClient, request: dict[str, Any], options: dict[str, Any] | None, *,
                    ctx: Context) -> dict[str, Any]:
    """See the module doc."""
    try:
        settings = state.settings(ctx.config)
    except ConfigError as exc:
        log.warning("http-client is misconfigured for this link: %s", exc)
        return {"err": {"configuration-error": None}}
    overall = settings.timeout_ms / 1000
    if options and options.get("timeout-ms") is not None:
        overall = options["timeout-ms"] / 1000
    overall = min(overall, ctx.remaining_s() - DEADLINE_MARGIN_S)
    rx: Receiver | None = None
    body_offer = read_offer(request.get("body-stream"))
    if isinstance(body_offer, str) and state.hub is not None:
        rx = state.hub.receiver()
        rx.accept(body_offer)  # the component's writes start coming
    if overall <= 0:
        if rx is not None:
            rx.close()
        return {"err": {"http-response-timeout": None}}
    try:
        async with asyncio.timeout(overall):
            return await _exchange(state, settings, request, options, rx, overall)
    except TimeoutError:
        return {"err": {"http-response-timeout": None}}
    except Refused as exc:
        return {"err": {exc.code: exc.payload}}
    except httpx.HTTPError as exc:
        return {"err": error_code(exc)}
    finally:
        if rx is not None:
            rx.close()  # a body nobody read to its end: its writer stops


async def _exchange(state: HttpClient, settings: Settings, request: dict[str, Any], options: dict[str, Any] | None,
                    rx: Receiver | None, overall: float) -> dict[str, Any]:
    client = state.client
    assert client is not None, "http-client is not started"
    try:
        url = httpx.URL(request["url"])
    except (httpx.InvalidURL, TypeError) as exc:
        raise Refused(f"invalid URL {request.get('url')!r:.200}: {exc}", "http-request-uri-invalid") from None
    check_destination(url, settings)
    from .http_client import request_headers

    connect, first_byte, between = (_ms(options, "connect-timeout-ms"), _ms(options, "first-byte-timeout-ms"),
                                    _ms(options, "between-bytes-timeout-ms"))
    first = bytes(request.get("body") or b"")
    content: Any = _body(first, rx) if rx is not None else (first or None)
    try:
        req = client.build_request(request["method"], url, headers=request_headers(request), content=content,
                                   timeout=httpx.Timeout(overall, connect=connect or overall,
                                                         read=between or overall))
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
        raise Refused(f"cannot send {request.get('method')!r:.20} {request.get('url')!r:.200}: {exc}",
                      "http-request-uri-invalid") from None
    head_budget = None if first_byte is None else first_byte + (connect or 0.0)
    try:
        async with asyncio.timeout(head_budget):
            response = await client.send(req, stream=True)
    except TimeoutError:  # as wasmtime's wasi-http says a first-byte timeout
        raise Refused("no response head within the first-byte timeout", "connection-read-timeout") from None
    try:
        return await _respond(state, request, response)
    finally:
        await response.aclose()


async def _respond(state: HttpClient, request: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
    """The response: whole in the reply when small, else its head now and its body on the stream."""
    from .http_client import response_headers

    head = {"status": response.status_code, "headers": response_headers(response)}
    offer = read_offer(request.get("response-stream"))
    early = EARLY_REPLY.get()
    if not isinstance(offer, tuple) or state.hub is None or early is None:
        from .http_client import read_limited

        return {"ok": {**head, "body": await read_limited(response, state.response_limit(request))}}
    pieces: list[bytes] = []
    size = 0
    chunks = response.aiter_raw()
    async for chunk in chunks:  # the start of the body, then decide
        pieces.append(chunk)
        size += len(chunk)
        if size > WHOLE_BYTES:
            break
    else:
        return {"ok": {**head, "body": b"".join(pieces)}}
    tx = state.hub.sender()
    tx.attach(request["response-stream"])
    early.send({"ok": {**head, "body": b"".join(pieces), "stream": True}})
    try:
        async for chunk in chunks:
            await tx.write(chunk)
    except StreamError:  # the component stopped reading: nothing more to do
        return {"ok": None}
    except httpx.TimeoutException as exc:
        tx.abort(f"connection-read-timeout: {exc or 'no body bytes within the between-bytes timeout'}")
        return {"ok": None}
    except httpx.HTTPError as exc:
        code = next(iter(error_code(exc)))
        tx.abort(f"{code}: {exc}")
        return {"ok": None}
    except BaseException as exc:  # the whole exchange's timeout, a cancelled call
        tx.abort(f"http-response-timeout: {type(exc).__name__}")
        raise
    tx.end()
    return {"ok": None}


def check_destination(url: httpx.URL, settings: Settings) -> None:
    """The egress rules: the one check every request of the provider passes, trellis:http and wasi:http
    alike, and again at each redirect."""
    if url.scheme not in ("http", "https"):
        raise Refused(f"unsupported scheme {url.scheme!r} (http and https only)", "http-request-uri-invalid")
    if not settings.allows(url.host):
        raise Refused(f"destination {url.host!r} is not allowed (allowed_hosts: "
                      f"{', '.join(settings.allowed_hosts)})", "http-request-denied")


def error_code(exc: httpx.HTTPError) -> dict[str, Any]:
    """The ``wasi:http`` ``error-code`` case (lower case) for an httpx failure."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return {"connection-timeout": None}
    if isinstance(exc, httpx.ReadTimeout):
        return {"connection-read-timeout": None}
    if isinstance(exc, httpx.WriteTimeout):
        return {"connection-write-timeout": None}
    if isinstance(exc, httpx.PoolTimeout):
        return {"connection-limit-reached": None}
    if isinstance(exc, httpx.ConnectError):
        low = text.lower()
        if "name or service" in low or "nodename" in low or "getaddrinfo" in low or "name resolution" in low:
            return {"dns-error": {"rcode": text[:200], "info-code": None}}
        if "ssl" in low or "certificate" in low:
            return {"tls-certificate-error": None}
        return {"connection-refused": None}
    if isinstance(exc, httpx.RemoteProtocolError):
        return {"http-protocol-error": None}
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return {"connection-terminated": None}
    return {"internal-error": text[:500]}
