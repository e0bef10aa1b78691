"""inventory-service: which SKUs are in stock, from the ``t_inventory`` table of the shared SQLite file.

The baseline of the Trellis component ``examples/platform-poc/inventory-service``.

    POST /get-inventory  {"skus": [sku, ...]}   200 [{sku, is_in_stock}, ...] in the order asked,
                                                unknown SKUs left out; 500 internal
    GET  /healthz

Environment: ``PORT``, ``DATA_DIR`` (the database is ``DATA_DIR/platform-poc.db``).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "common"), str(HERE.parents[1] / "common")]

from baseline_service import failure, healthz, serve, settings_or_exit, setup_logging  # noqa: E402 (after the sys.path or timing lines above)
from sqlite_db import Database, db_path, describe, marks, schema  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import JSONResponse, Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "inventory-service"
#: SKUs asked for per statement (SQLite caps the bound parameters of one statement)
CHUNK = 500

log = setup_logging(SERVICE)
DB_PATH = settings_or_exit(SERVICE, db_path)
state: dict[str, Any] = {}


async def quantities(db: Database, skus: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(skus), CHUNK):
        chunk = skus[start:start + CHUNK]
        rows = await db.query(f"SELECT sku, quantity FROM {schema.INVENTORY} WHERE sku IN ({marks(len(chunk))})",
                              chunk)
        for row in rows:
            found[row["sku"]] = row["quantity"]
    return found


async def get_inventory(request: Request) -> Response:
    try:
        skus = (await request.json())["skus"]
        if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
            raise TypeError("skus must be a list of strings")
    except (ValueError, KeyError, TypeError) as exc:
        return failure("internal", f"bad get-inventory call: {exc}", 400)
    try:
        stock = await quantities(state["db"], sorted(set(skus)))
    except sqlite3.Error as exc:
        return failure("internal", f"reading inventory: {describe(exc)}")
    return JSONResponse([{"sku": s, "is_in_stock": stock[s] > 0} for s in skus if s in stock])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state["db"] = await Database(DB_PATH).open()
    try:
        yield
    finally:
        await state["db"].close()


app = Starlette(lifespan=lifespan, routes=[
    Route("/get-inventory", get_inventory, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
])

if __name__ == "__main__":
    serve(app, SERVICE)
