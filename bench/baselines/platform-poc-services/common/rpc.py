"""The services' calls to each other: each WIT function of the Trellis app as ``POST /FUNCTION`` with JSON.

Where a Trellis component calls another through a link (``orders.create-order(items)``),
a baseline service posts to its peer's URL (``POST {ORDERS_URL}/create-order`` with
``{"items": [...]}``). The answer is ``200`` with the function's result as JSON, or an
error status with ``{"error": CASE, "message": TEXT}``: CASE is the WIT error variant's
case (``internal``, ``bad-request``, ``store-error``), TEXT its payload. One client per
peer keeps connections open between calls.

The client is ``HTTP_CLIENT``: ``aiohttp`` (the default) or ``httpx``. They differ in cost,
not behaviour. One call at a time, httpx spends ~1.1 CPU-ms of the caller's per call
(its transport runs on anyio), aiohttp ~0.45, a bare asyncio-streams client ~0.09; with
20 requests in flight httpx costs far more (its connection pool checks every pooled
connection's socket per request: encode/httpx#3215), and the whole app spends ~6.5
CPU-ms per order with it against ~2 with aiohttp. A baseline should be what a service
tuned for cost would run, so aiohttp is the default; httpx stays selectable to show it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from baseline_service import SettingsError

#: as long as a Trellis call may take by default
TIMEOUT_S = 30.0
#: connections kept open to one peer (the load is 20 requests in flight)
POOL = 64
CLIENTS = ("aiohttp", "httpx")
JSON_HEADERS = {"content-type": "application/json"}


def http_client() -> str:
    """``HTTP_CLIENT`` from the environment: ``aiohttp`` (default) or ``httpx``."""
    name = os.environ.get("HTTP_CLIENT") or "aiohttp"
    if name not in CLIENTS:
        raise SettingsError(f"HTTP_CLIENT={name!r}: use {' or '.join(CLIENTS)}")
    if importlib.util.find_spec(name) is None:
        raise SettingsError(f"HTTP_CLIENT={name}: the {name} package is not installed "
                            "(pip install -e '.[bench]'), or choose the other client")
    return name


class PeerError(Exception):
    """The peer answered an error (``case``, ``message``) or could not be reached (case ``unreachable``)."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(f"{case}: {message}")
        self.case = case
        self.message = message


class Peer:
    """Another service, by its base URL (create it on the running event loop)."""

    def __init__(self, name: str, base_url: str, client: str = "aiohttp") -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = client
        if client == "aiohttp":
            import aiohttp

            self._errors: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)
            self._session: Any = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL), timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        else:
            import httpx

            self._errors = (httpx.HTTPError,)
            self._session = httpx.AsyncClient(timeout=TIMEOUT_S, limits=httpx.Limits(
                max_connections=POOL, max_keepalive_connections=POOL))

    async def _post(self, url: str, body: bytes) -> tuple[int, bytes]:
        if self.client == "aiohttp":
            async with self._session.post(url, data=body, headers=JSON_HEADERS) as r:
                return int(r.status), bytes(await r.read())
        r = await self._session.post(url, content=body, headers=JSON_HEADERS)
        return r.status_code, r.content

    async def call(self, function: str, args: dict[str, Any] | None = None) -> Any:
        try:
            status, raw = await self._post(f"{self.base_url}/{function}", json.dumps(args or {}).encode())
        except self._errors as exc:
            raise PeerError("unreachable", f"calling {self.name}: {type(exc).__name__}: {exc}") from None
        if status == 200:
            return json.loads(raw)
        try:
            body = json.loads(raw)
            case, message = str(body["error"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            case, message = "internal", f"{self.name} answered {status}: {raw[:200]!r}"
        raise PeerError(case, message)

    async def close(self) -> None:
        if self.client == "aiohttp":
            await self._session.close()
        else:
            await self._session.aclose()
