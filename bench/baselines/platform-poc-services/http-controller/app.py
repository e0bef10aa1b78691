"""http-controller: the HTTP API of the orders application, calling the other services over HTTP.

The baseline of the Trellis component ``examples/platform-poc/http-controller`` behind
``builtin:http-server``: the same routes, checks, JSON and status codes
(examples/platform-poc/README.md, "The HTTP API"):

    GET  /data-init/{all|products|inventory|orders}   200; 400 unknown action; 405
    GET  /inventory?skus=A,B                           200 [{sku, is_in_stock}]; 400 without skus
    GET  /orders                                       200 [{order_number, line_items, total}]
    POST /orders        [{sku, price, quantity}]       201; 400 bad input; 500 out of stock (reason in the body)
    GET  /products                                     200 [{id, name, description, price, sku}]
    POST /products      {id, name, description, price, sku}   201; 400 bad input
    anything else                                      404 (405 for another method on a route)

It has no route of its own beyond these (no ``/healthz``: the API is the Trellis app's);
it is ready when it answers HTTP at all, which uvicorn does only after start-up.

Environment: ``PORT``, ``PRODUCTS_URL``, ``INVENTORY_URL``, ``ORDERS_URL``, ``DATA_INIT_URL``,
``HTTP_CLIENT`` (``aiohttp``, the default, or ``httpx``: see ../common/rpc.py).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "common"), str(HERE.parents[1] / "common")]

from baseline_service import env_url, serve, settings_or_exit, setup_logging, text  # noqa: E402 (after the sys.path or timing lines above)
from rpc import Peer, PeerError, http_client  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Mount  # noqa: E402 (after the sys.path or timing lines above)
from starlette.types import Receive, Scope, Send  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "http-controller"
S32_MAX = 2**31 - 1
PEERS = {"products": "PRODUCTS_URL", "inventory": "INVENTORY_URL", "orders": "ORDERS_URL",
         "data-init": "DATA_INIT_URL"}
DATA_INIT_ACTIONS = ("all", "products", "inventory", "orders")

log = setup_logging(SERVICE)
URLS: dict[str, str] = settings_or_exit(SERVICE, lambda: {name: env_url(var) for name, var in PEERS.items()})
CLIENT = settings_or_exit(SERVICE, http_client)
peers: dict[str, Peer] = {}


class BadInput(Exception):
    """The request's input is unusable: answer 400."""


def as_json(status: int, value: Any) -> Response:
    return Response(json.dumps(value, separators=(",", ":")).encode(), status_code=status,
                    media_type="application/json")


def bad_request() -> Response:
    return text(400, "400 Bad Request")


def not_found() -> Response:
    return text(404, "404 Not Found")


def method_not_allowed() -> Response:
    return text(405, "405 Method Not Allowed")


def server_error(what: str, error: PeerError) -> Response:
    """500 with the reason in the body (``500 Internal Server Error: Product(s) not in stock: X``)."""
    log.error("%s: %s: %s", what, error.case, error.message)
    return text(500, f"500 Internal Server Error: {error.message or error.case}")


# ---------------------------------------------------------------- input


def whole_number(value: Any, what: str, low: int, high: int = S32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"{what} must be a whole number from {low} to {high}")
    return value


def string(value: Any, what: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise BadInput(f"{what} must be a{' non-empty' if not empty else ''} string")
    return value


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"body is not JSON: {exc}") from None


def parse_line_items(body: bytes) -> list[dict[str, Any]]:
    data = parse_json(body)
    if not isinstance(data, list) or not data:
        raise BadInput("body must be a non-empty JSON list of line items")
    items: list[dict[str, Any]] = []
    total = 0
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise BadInput(f"line item {i} must be an object")
        price = whole_number(item.get("price"), f"line item {i}: price", 0)
        quantity = whole_number(item.get("quantity"), f"line item {i}: quantity", 1)
        items.append({"sku": string(item.get("sku"), f"line item {i}: sku", empty=False), "price": price,
                      "quantity": quantity})
        total += price * quantity
    if total > S32_MAX:
        raise BadInput(f"the order's total must not exceed {S32_MAX} pence")
    return items


def parse_product(body: bytes) -> dict[str, Any]:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadInput("body must be a JSON object")
    product_id = string(data.get("id"), "id", empty=False)
    try:
        product_id = str(uuid.UUID(product_id))
    except ValueError:
        raise BadInput(f"id {product_id!r} is not a UUID") from None
    return {
        "id": product_id,
        "name": string(data.get("name"), "name"),
        "description": string(data.get("description"), "description"),
        "price": whole_number(data.get("price"), "price", 0),
        "sku": string(data.get("sku"), "sku", empty=False),
    }


# ---------------------------------------------------------------- routes


async def data_init(action: str, method: str) -> Response:
    if action not in DATA_INIT_ACTIONS:
        return bad_request()
    if method != "GET":
        return method_not_allowed()
    try:
        await peers["data-init"].call(f"init-{action}")
    except PeerError as e:
        return server_error(f"data-init {action} failed", e)
    return text(200, "200 OK")


async def get_inventory(query: str, method: str) -> Response:
    params = dict(parse_qsl(query, keep_blank_values=True))
    if "skus" not in params:
        return bad_request()
    if method != "GET":
        return method_not_allowed()
    skus = [s for s in params["skus"].split(",") if s]
    try:
        found = await peers["inventory"].call("get-inventory", {"skus": skus}) if skus else []
    except PeerError as e:
        return server_error("getting inventory failed", e)
    return as_json(200, [{"sku": a["sku"], "is_in_stock": a["is_in_stock"]} for a in found])


async def order_routes(request: Request) -> Response:
    if request.method == "GET":
        try:
            found = await peers["orders"].call("get-orders")
        except PeerError as e:
            return server_error("listing orders failed", e)
        return as_json(200, found)
    if request.method == "POST":
        items = parse_line_items(await request.body())
        try:
            await peers["orders"].call("create-order", {"items": items})
        except PeerError as e:
            return server_error("creating the order failed", e)
        return text(201, "201 Created")
    return method_not_allowed()


async def product_routes(request: Request) -> Response:
    if request.method == "GET":
        try:
            found = await peers["products"].call("list-products")
        except PeerError as e:
            return server_error("listing products failed", e)
        return as_json(200, found)
    if request.method == "POST":
        product = parse_product(await request.body())
        try:
            await peers["products"].call("create-product", {"product": product})
        except PeerError as e:
            if e.case == "bad-request":
                log.info("product refused: %s", e.message)
                return bad_request()
            return server_error("creating the product failed", e)
        return text(201, "201 Created")
    return method_not_allowed()


async def route(request: Request) -> Response:
    path = request.scope.get("raw_path", b"").decode("utf-8", "replace") or request.scope["path"]
    path, _, _ = path.partition("?")
    query = request.scope.get("query_string", b"").decode("utf-8", "replace")
    parts = path.split("/")[1:]
    if len(parts) == 2 and parts[0] == "data-init":
        return await data_init(parts[1], request.method)
    if parts == ["inventory"]:
        return await get_inventory(query, request.method)
    if parts == ["orders"]:
        return await order_routes(request)
    if parts == ["products"]:
        return await product_routes(request)
    return not_found()


async def front(scope: Scope, receive: Receive, send: Send) -> None:
    """Every request, whatever its path and method (the routing above is the component's own)."""
    request = Request(scope, receive)
    try:
        response = await route(request)
    except BadInput as exc:
        log.info("%s %s: 400: %s", request.method, request.url.path, exc)
        response = bad_request()
    except Exception as exc:  # a bug here is this request's 500, as a trapping component's would be
        log.exception("%s %s failed", request.method, request.url.path)
        response = text(500, f"500 Internal Server Error: {type(exc).__name__}")
    await response(scope, receive, send)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    peers.update({name: Peer(f"{name}-service" if name != "data-init" else name, url, CLIENT)
                  for name, url in URLS.items()})
    try:
        yield
    finally:
        for peer in peers.values():
            await peer.close()


app = Starlette(lifespan=lifespan, routes=[Mount("", app=front)])

if __name__ == "__main__":
    serve(app, SERVICE)
