"""orders-service: orders in the shared SQLite file, checked against inventory-service, announced over NATS.

The baseline of the Trellis component ``examples/platform-poc/orders-service``:
``create-order`` asks inventory-service (over HTTP) whether every SKU is in stock (a SKU
the inventory does not know is not), stores the order's line items and its row in one
transaction, then publishes ``{"order_number": ...}`` on the notification subject (core
NATS). A failed publish is logged; the order stands.

    POST /create-order  {"items": [{sku, price, quantity}, ...]}   200 null; 500 internal (the reason)
    POST /get-orders    {}                                         200 [{order_number, line_items, total}]
    GET  /healthz

Environment: ``PORT``, ``DATA_DIR``, ``NATS_URL``, ``INVENTORY_URL``,
``NOTIFICATION_SUBJECT`` (default ``platform-poc.order-notification``), ``HTTP_CLIENT``
(``aiohttp``, the default, or ``httpx``: see ../common/rpc.py).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "common"), str(HERE.parents[1] / "common")]

from baseline_service import (  # noqa: E402 (after the sys.path or timing lines above)
    connect_nats,
    env,
    env_url,
    failure,
    healthz,
    serve,
    settings_or_exit,
    setup_logging,
)
from rpc import Peer, PeerError, http_client  # noqa: E402 (after the sys.path or timing lines above)
from sqlite_db import Database, db_path, describe, marks, schema  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import JSONResponse, Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "orders-service"
S32_MAX = 2**31 - 1
#: line items per INSERT statement (5 bound parameters each)
ITEMS_PER_INSERT = 100
SELECT_ORDERS = f"""
SELECT o.order_number, o.total, li.sku, li.price, li.quantity
FROM {schema.ORDERS} AS o JOIN {schema.LINE_ITEMS} AS li ON li.order_number = o.order_number
ORDER BY o.order_number, li.line"""

log = setup_logging(SERVICE)
DB_PATH, INVENTORY_URL, SUBJECT, CLIENT = settings_or_exit(SERVICE, lambda: (
    db_path(), env_url("INVENTORY_URL"), env("NOTIFICATION_SUBJECT", "platform-poc.order-notification"),
    http_client()))
state: dict[str, Any] = {}


class Refused(Exception):
    """The order cannot be made (the message is the caller's reason)."""


def line_items(raw: Any) -> list[tuple[str, int, int]]:
    if not isinstance(raw, list) or not raw:
        raise Refused("an order needs at least one line item")
    items = []
    for item in raw:
        sku, price, quantity = item["sku"], item["price"], item["quantity"]
        if not isinstance(sku, str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                               for v in (price, quantity)):
            raise Refused(f"not a line item: {item!r}")
        items.append((sku, price, quantity))
    return items


async def check_stock(items: list[tuple[str, int, int]]) -> None:
    skus = sorted({sku for sku, _, _ in items})
    try:
        availability = await state["inventory"].call("get-inventory", {"skus": skus})
    except PeerError as exc:
        raise Refused(f"asking inventory-service: {exc.case}: {exc.message}") from None
    in_stock = {a["sku"] for a in availability if a["is_in_stock"]}
    missing = [sku for sku in skus if sku not in in_stock]
    if missing:
        log.info("not in stock: %s", ", ".join(missing))
        raise Refused(f"Product(s) not in stock: {', '.join(missing)}")


async def store(order_number: str, items: list[tuple[str, int, int]], total: int) -> None:
    """The line items and the order's row in one transaction: all of the order or none."""
    statements: list[tuple[str, list[Any]]] = []
    for start in range(0, len(items), ITEMS_PER_INSERT):
        chunk = items[start:start + ITEMS_PER_INSERT]
        params: list[Any] = []
        for line, (sku, price, quantity) in enumerate(chunk, start):
            params += [order_number, line, sku, price, quantity]
        sql = (f"INSERT INTO {schema.LINE_ITEMS} (order_number, line, sku, price, quantity) "
               f"VALUES {marks(len(chunk), 5)}")
        statements.append((sql, params))
    statements.append((f"INSERT INTO {schema.ORDERS} (order_number, total) VALUES (?, ?)", [order_number, total]))
    try:
        await state["db"].transaction(statements)
    except sqlite3.Error as exc:
        raise Refused(f"storing the order: {describe(exc)}") from None


async def announce(order_number: str) -> None:
    try:
        await state["nc"].publish(SUBJECT, json.dumps({"order_number": order_number}).encode())
    except Exception as exc:
        log.error("order %s: publishing the notification failed: %s", order_number, exc)


async def create_order(request: Request) -> Response:
    try:
        items = line_items((await request.json())["items"])
    except (ValueError, KeyError, TypeError) as exc:
        return failure("internal", f"bad create-order call: {exc}", 400)
    except Refused as exc:
        return failure("internal", str(exc))
    total = sum(price * quantity for _, price, quantity in items)
    if not 0 <= total <= S32_MAX:
        return failure("internal", f"the order's total {total} is out of range")
    try:
        await check_stock(items)
        order_number = str(uuid.uuid4())
        await store(order_number, items, total)
    except Refused as exc:
        return failure("internal", str(exc))
    log.info("order %s created: %d line item(s), total %d", order_number, len(items), total)
    await announce(order_number)
    return JSONResponse(None)


async def get_orders(request: Request) -> Response:
    try:
        rows = await state["db"].query(SELECT_ORDERS)
    except sqlite3.Error as exc:
        return failure("internal", f"reading orders: {describe(exc)}")
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        number = row["order_number"]
        order = found.get(number)
        if order is None:
            order = found[number] = {"order_number": number, "line_items": [], "total": row["total"]}
        order["line_items"].append({"sku": row["sku"], "price": row["price"], "quantity": row["quantity"]})
    return JSONResponse(list(found.values()))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    db = await Database(DB_PATH).open()
    nc = await connect_nats(SERVICE)
    inventory = Peer("inventory-service", INVENTORY_URL, CLIENT)
    state.update(db=db, nc=nc, inventory=inventory)
    try:
        yield
    finally:
        await inventory.close()
        await nc.drain()
        await db.close()


app = Starlette(lifespan=lifespan, routes=[
    Route("/create-order", create_order, methods=["POST"]),
    Route("/get-orders", get_orders, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
])

if __name__ == "__main__":
    serve(app, SERVICE)
