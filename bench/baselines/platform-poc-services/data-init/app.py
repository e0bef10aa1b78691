"""data-init: creates the SQL tables and seeds the sample products (key-value) and their stock (SQL).

The baseline of the Trellis component ``examples/platform-poc/data-init``, with the same
seed. Every function may run any number of times: tables are created if missing, products
are written by SKU, stock is set (not added to), product ids are derived from the SKU.

    POST /init-all, /init-products, /init-inventory, /init-orders   200 null; 500 {"error": "internal", ...}
    GET  /healthz

Environment: ``PORT``, ``NATS_URL``, ``DATA_DIR``, ``PRODUCTS_BUCKET`` (default
``platform-poc-products``).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "common"), str(HERE.parents[1] / "common")]

from baseline_service import (  # noqa: E402 (after the sys.path or timing lines above)
    connect_nats,
    env_name,
    failure,
    healthz,
    serve,
    settings_or_exit,
    setup_logging,
)
from kv import open_bucket  # noqa: E402 (after the sys.path or timing lines above)
from sqlite_db import Database, db_path, describe, marks, schema  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import JSONResponse, Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "data-init"
IN_STOCK = 10
PRODUCT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/redbadger/platform-poc/products")

#: (sku, name, description, price in pence); the first half is in stock, the second half is not
PRODUCTS = [
    ("ENG-V8-500", "Car Engine", "A V8 engine, 500 horsepower", 8500),
    ("BRK-PD-HP", "Brake Pads", "High-performance brake pads", 150),
    ("AIR-FLT-PREM", "Air Filter", "A premium air filter for more airflow", 30),
    ("SPK-PLG-HI-EFF", "Spark Plugs", "High-efficiency spark plugs", 60),
    ("TIR-SET-AS", "Tire Set", "Four all-season tires", 600),
    ("BAT-HC-12V", "Battery", "A high-capacity 12 V car battery", 120),
    ("WND-WPR-AW", "Windshield Wipers", "Windshield wipers for any weather", 45),
    ("FL-PMP-ELEC", "Fuel Pump", "An electric fuel pump", 220),
    ("RAD-HI-EFF", "Radiator", "A high-efficiency radiator", 320),
    ("HDL-LED-LONG", "Headlights", "Long-life LED headlights", 250),
    ("ALT-HO-ENH", "Alternator", "A high-output alternator", 300),
    ("EXH-SYS-PERF", "Exhaust System", "A performance exhaust system", 750),
    ("SUS-KIT-IMP", "Suspension Kit", "A complete kit for better handling", 900),
    ("TRB-CHR-HP", "Turbocharger", "A high-performance turbocharger", 1400),
]

log = setup_logging(SERVICE)
DB_PATH, BUCKET = settings_or_exit(SERVICE, lambda: (db_path(), env_name("PRODUCTS_BUCKET", "platform-poc-products")))
state: dict[str, Any] = {}


class Failed(Exception):
    """What failed, for the caller (``storing products: ...``)."""


def product_json(sku: str, name: str, description: str, price: int) -> bytes:
    product = {"id": str(uuid.uuid5(PRODUCT_IDS, sku)), "name": name, "description": description,
               "price": price, "sku": sku}
    return json.dumps(product, separators=(",", ":")).encode()


async def execute(what: str, sql: str, params: list[Any] | None = None) -> None:
    try:
        await state["db"].execute(sql, params or [])
    except sqlite3.Error as exc:
        raise Failed(f"{what}: {describe(exc)}") from None


async def init_products() -> None:
    try:
        for p in PRODUCTS:
            await state["kv"].put(p[0], product_json(*p))
    except Exception as exc:
        raise Failed(f"storing products: {type(exc).__name__}: {exc}") from None
    log.info("%d products stored", len(PRODUCTS))


async def init_inventory() -> None:
    await execute("creating the inventory table", schema.CREATE_INVENTORY)
    half = len(PRODUCTS) // 2
    params: list[Any] = []
    for i, (sku, *_) in enumerate(PRODUCTS):
        params += [sku, IN_STOCK if i < half else 0]
    await execute("stocking the inventory",
                  f"INSERT INTO {schema.INVENTORY} (sku, quantity) VALUES {marks(len(PRODUCTS), 2)} "
                  "ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity", params)
    log.info("inventory stocked: %d SKUs with %d, %d with 0", half, IN_STOCK, len(PRODUCTS) - half)


async def init_orders() -> None:
    await execute("creating the orders table", schema.CREATE_ORDERS)
    await execute("creating the order line items table", schema.CREATE_LINE_ITEMS)
    log.info("order tables ready")


async def init_all() -> None:
    await init_products()
    await init_inventory()
    await init_orders()


def endpoint(init: Callable[[], Awaitable[None]]) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            await init()
        except Failed as exc:
            return failure("internal", str(exc))
        return JSONResponse(None)

    return handle


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    db = await Database(DB_PATH).open()
    nc = await connect_nats(SERVICE)
    state.update(db=db, nc=nc, kv=await open_bucket(nc, BUCKET))
    try:
        yield
    finally:
        await nc.drain()
        await db.close()


app = Starlette(lifespan=lifespan, routes=[
    *(Route(f"/init-{name}", endpoint(fn), methods=["POST"]) for name, fn in (
        ("all", init_all), ("products", init_products), ("inventory", init_inventory), ("orders", init_orders))),
    Route("/healthz", healthz, methods=["GET"]),
])

if __name__ == "__main__":
    serve(app, SERVICE)
