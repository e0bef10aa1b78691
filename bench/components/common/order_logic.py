"""The single-component handler's logic, shared by every peer of the HTTP benchmark.

``POST /orders`` with a JSON list of ``{sku, price, quantity}``: parse, total,
a uuid4 order number, a 201 JSON answer. The Trellis component, the
``wasi:http`` component and the uvicorn app all call :func:`handle_order`, so
the peers differ only in what carries the request to it. Standard library
only: it is bundled into Wasm components by componentize-py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

CREATED = 201
BAD_REQUEST = 400
NOT_FOUND = 404
JSON_TYPE = b"application/json"
TEXT_TYPE = b"text/plain; charset=utf-8"


def handle_order(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
    """(status, content type, body) for one request."""
    if path.split("?", 1)[0] != "/orders" or method != "POST":
        return NOT_FOUND, TEXT_TYPE, b"404 Not Found\n"
    try:
        items = json.loads(body)
        if not isinstance(items, list) or not items:
            raise ValueError("expected a non-empty list of line items")
        lines: list[dict[str, Any]] = [
            {"sku": str(i["sku"]), "price": int(i["price"]), "quantity": int(i["quantity"])} for i in items]
    except (ValueError, KeyError, TypeError) as exc:
        return BAD_REQUEST, TEXT_TYPE, f"400 Bad Request: {exc}\n".encode()
    order = {"order_number": str(uuid.uuid4()), "line_items": lines,
             "total": sum(line["price"] * line["quantity"] for line in lines)}
    return CREATED, JSON_TYPE, json.dumps(order, separators=(",", ":")).encode()
