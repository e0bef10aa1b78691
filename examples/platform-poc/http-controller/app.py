"""http-controller: the HTTP API of the orders application.

Parses requests, checks their input, calls the services over links and turns
their answers into HTTP:

    GET  /data-init/{all|products|inventory|orders}   200; 400 unknown action; 405
    GET  /inventory?skus=A,B                           200 [{sku, is_in_stock}]; 400 without skus
    GET  /orders                                       200 [{order_number, line_items, total}]
    POST /orders        [{sku, price, quantity}]       201; 400 bad input; 500 out of stock (reason in the body)
    GET  /products                                     200 [{id, name, description, price, sku}]
    POST /products      {id, name, description, price, sku}   201; 400 bad input
    anything else                                      404 (405 for another method on a route)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import init_funcs, inventory, orders, products, response_body
from wit_world.imports.logging import Level, log
from wit_world.imports.platform_poc_orders_types import LineItem
from wit_world.imports.platform_poc_products_types import Error_BadRequest, Product
from wit_world.imports.trellis_http_types import Request, Response

CONTEXT = "http-controller"
S32_MAX = 2**31 - 1
TEXT = [("content-type", b"text/plain; charset=utf-8")]
JSON = [("content-type", b"application/json")]
OK = "200 OK"
CREATED = "201 Created"


class BadInput(Exception):
    """The request's input is unusable: answer 400."""


def text(status: int, body: str) -> Response:
    return Response(status=status, headers=TEXT, body=body.encode())


#: bytes per piece of a large body: one call carries ~2.6 MB of list<u8> out of Wasm (docs/http.md)
PIECE = 1 << 20


def as_json(status: int, value: Any) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    # a body past what one call carries goes out in pieces; the response carries the last one
    start = 0
    while len(body) - start > PIECE:
        try:
            response_body.append(body[start:start + PIECE])
        except Err as e:
            return server_error("sending a large response", e.value)
        start += PIECE
    return Response(status=status, headers=JSON, body=body[start:] if start else body)


def bad_request() -> Response:
    return text(400, "400 Bad Request")


def not_found() -> Response:
    return text(404, "404 Not Found")


def method_not_allowed() -> Response:
    return text(405, "405 Method Not Allowed")


def server_error(what: str, error: Any) -> Response:
    """500 with the reason in the body (``500 Internal Server Error: Product(s) not in stock: X``)."""
    log(Level.ERROR, CONTEXT, f"{what}: {describe(error)}")
    return text(500, f"500 Internal Server Error: {reason(error)}")


def describe(error: Any) -> str:
    """An `Err` payload (a variant case such as `Error_Internal("...")`, or a string) as text for the log."""
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {getattr(error, 'value', '')}"


def reason(error: Any) -> str:
    """An `Err` payload's message for the client: the text a service put in it."""
    value = error if isinstance(error, str) else getattr(error, "value", None)
    return str(value) if value else type(error).__name__


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


def parse_line_items(body: bytes) -> list[LineItem]:
    data = parse_json(body)
    if not isinstance(data, list) or not data:
        raise BadInput("body must be a non-empty JSON list of line items")
    items = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise BadInput(f"line item {i} must be an object")
        items.append(LineItem(
            sku=string(item.get("sku"), f"line item {i}: sku", empty=False),
            price=whole_number(item.get("price"), f"line item {i}: price", 0),
            quantity=whole_number(item.get("quantity"), f"line item {i}: quantity", 1),
        ))
    if sum(item.price * item.quantity for item in items) > S32_MAX:
        raise BadInput(f"the order's total must not exceed {S32_MAX} pence")
    return items


def parse_product(body: bytes) -> Product:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadInput("body must be a JSON object")
    product_id = string(data.get("id"), "id", empty=False)
    try:
        product_id = str(uuid.UUID(product_id))
    except ValueError:
        raise BadInput(f"id {product_id!r} is not a UUID") from None
    return Product(
        id=product_id,
        name=string(data.get("name"), "name"),
        description=string(data.get("description"), "description"),
        price=whole_number(data.get("price"), "price", 0),
        sku=string(data.get("sku"), "sku", empty=False),
    )


# ---------------------------------------------------------------- routes


def data_init(action: str, method: str) -> Response:
    init: Callable[[], None] | None = {
        "all": init_funcs.init_all,
        "products": init_funcs.init_products,
        "inventory": init_funcs.init_inventory,
        "orders": init_funcs.init_orders,
    }.get(action)
    if init is None:
        return bad_request()
    if method != "GET":
        return method_not_allowed()
    try:
        init()
    except Err as e:
        return server_error(f"data-init {action} failed", e.value)
    return text(200, OK)


def get_inventory(query: str, method: str) -> Response:
    params = dict(parse_qsl(query, keep_blank_values=True))
    if "skus" not in params:
        return bad_request()
    if method != "GET":
        return method_not_allowed()
    skus = [s for s in params["skus"].split(",") if s]
    try:
        found = inventory.get_inventory(skus) if skus else []
    except Err as e:
        return server_error("getting inventory failed", e.value)
    return as_json(200, [{"sku": a.sku, "is_in_stock": a.is_in_stock} for a in found])


def order_routes(request: Request) -> Response:
    if request.method == "GET":
        try:
            found = orders.get_orders()
        except Err as e:
            return server_error("listing orders failed", e.value)
        return as_json(200, [
            {"order_number": o.order_number,
             "line_items": [{"sku": i.sku, "price": i.price, "quantity": i.quantity} for i in o.line_items],
             "total": o.total}
            for o in found
        ])
    if request.method == "POST":
        items = parse_line_items(request.body)
        try:
            orders.create_order(items)
        except Err as e:
            return server_error("creating the order failed", e.value)
        return text(201, CREATED)
    return method_not_allowed()


def product_routes(request: Request) -> Response:
    if request.method == "GET":
        try:
            found = products.list_products()
        except Err as e:
            return server_error("listing products failed", e.value)
        return as_json(200, [
            {"id": p.id, "name": p.name, "description": p.description, "price": p.price, "sku": p.sku}
            for p in found
        ])
    if request.method == "POST":
        product = parse_product(request.body)
        try:
            products.create_product(product)
        except Err as e:
            if isinstance(e.value, Error_BadRequest):
                log(Level.INFO, CONTEXT, f"product refused: {e.value.value}")
                return bad_request()
            return server_error("creating the product failed", e.value)
        return text(201, CREATED)
    return method_not_allowed()


def route(request: Request) -> Response:
    path, _, query = request.path_with_query.partition("?")
    parts = path.split("/")[1:]
    if len(parts) == 2 and parts[0] == "data-init":
        return data_init(parts[1], request.method)
    if parts == ["inventory"]:
        return get_inventory(query, request.method)
    if parts == ["orders"]:
        return order_routes(request)
    if parts == ["products"]:
        return product_routes(request)
    return not_found()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        try:
            return route(request)
        except BadInput as exc:
            log(Level.INFO, CONTEXT, f"{request.method} {request.path_with_query}: 400: {exc}")
            return bad_request()
