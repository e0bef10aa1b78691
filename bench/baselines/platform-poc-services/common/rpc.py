"""The services' calls to each other: each WIT function of the Trellis app as ``POST /FUNCTION`` with JSON.

Where a Trellis component calls another through a link (``orders.create-order(items)``),
a baseline service posts to its peer's URL (``POST {ORDERS_URL}/create-order`` with
``{"items": [...]}``). The answer is ``200`` with the function's result as JSON, or an
error status with ``{"error": CASE, "message": TEXT}``: CASE is the WIT error variant's
case (``internal``, ``bad-request``, ``store-error``), TEXT its payload. One
``httpx.AsyncClient`` per peer keeps connections open between calls.
"""

from __future__ import annotations

from typing import Any

import httpx

#: as long as a Trellis call may take by default
TIMEOUT_S = 30.0
#: connections kept open to one peer (the load is 20 requests in flight)
POOL = httpx.Limits(max_connections=64, max_keepalive_connections=64)


class PeerError(Exception):
    """The peer answered an error (``case``, ``message``) or could not be reached (case ``unreachable``)."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(f"{case}: {message}")
        self.case = case
        self.message = message


class Peer:
    """Another service, by its base URL."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.client = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S, limits=POOL)

    async def call(self, function: str, args: dict[str, Any] | None = None) -> Any:
        try:
            r = await self.client.post("/" + function, json=args or {})
        except httpx.HTTPError as exc:
            raise PeerError("unreachable", f"calling {self.name}: {type(exc).__name__}: {exc}") from None
        if r.status_code == 200:
            return r.json()
        try:
            body = r.json()
            case, message = str(body["error"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            case, message = "internal", f"{self.name} answered {r.status_code}: {r.text[:200]}"
        raise PeerError(case, message)

    async def close(self) -> None:
        await self.client.aclose()
