"""The ceiling: the single component's logic as a raw ASGI app under uvicorn (no Wasm, no lattice).

``uvicorn bench.http.uvicorn_app:app`` — the same ``handle_order`` as the
Wasm components (``bench/components/common/order_logic.py``), no framework.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "components" / "common"))

from order_logic import handle_order  # noqa: E402 (after the sys.path or timing lines above)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    path = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    status, ctype, payload = handle_order(scope["method"], path, body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
