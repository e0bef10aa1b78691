"""products-service: the product catalogue in NATS key-value (key: SKU, value: the product as JSON).

The baseline of the Trellis component ``examples/platform-poc/products-service``: the same
checks, the same JSON, the same bucket layout.

    POST /create-product  {"product": {id, name, description, price, sku}}   200 null; 400 bad-request
    POST /list-products   {}                                                 200 [product, ...] by SKU
    GET  /healthz

Environment: ``PORT``, ``NATS_URL``, ``PRODUCTS_BUCKET`` (default ``platform-poc-products``,
the bucket the Trellis app's components open as ``products``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
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
from kv import list_keys, open_bucket  # noqa: E402 (after the sys.path or timing lines above)
from nats.js.errors import KeyNotFoundError  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import JSONResponse, Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "products-service"
SKU = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MAX_SKU = 128
FIELDS = ("id", "name", "description", "price", "sku")

log = setup_logging(SERVICE)
BUCKET = settings_or_exit(SERVICE, lambda: env_name("PRODUCTS_BUCKET", "platform-poc-products"))
state: dict[str, Any] = {}


def to_json(product: dict[str, Any]) -> bytes:
    return json.dumps({f: product[f] for f in FIELDS}, separators=(",", ":")).encode()


def from_json(key: str, raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    return {"id": str(data["id"]), "name": str(data["name"]), "description": str(data["description"]),
            "price": int(data["price"]), "sku": str(data["sku"])}


async def create_product(request: Request) -> Response:
    try:
        product = (await request.json())["product"]
        if not isinstance(product, dict) or not all(f in product for f in FIELDS):
            raise ValueError("not a product")
        sku = str(product["sku"])
    except (ValueError, KeyError, TypeError) as exc:
        return failure("bad-request", f"not a product: {exc}", 400)
    if len(sku) > MAX_SKU or not SKU.match(sku):
        return failure("bad-request", f"sku {sku!r}: use up to {MAX_SKU} letters, digits, '-', '_' and inner '.'", 400)
    try:
        await state["kv"].put(sku, to_json(product))
    except Exception as exc:  # the store's error, whatever it is, is the caller's store-error
        return failure("store-error", f"storing {sku!r}: {type(exc).__name__}: {exc}")
    log.info("product %s stored", sku)
    return JSONResponse(None)


async def list_products(request: Request) -> Response:
    kv = state["kv"]

    async def get(key: str) -> bytes | None:
        try:
            return (await kv.get(key)).value or b""
        except KeyNotFoundError:  # deleted between listing and reading
            return None

    try:
        keys = await list_keys(state["nc"], BUCKET)
        found = await asyncio.gather(*(get(k) for k in keys))
    except Exception as exc:
        return failure("store-error", f"listing products: {type(exc).__name__}: {exc}")
    try:
        products = [from_json(k, raw) for k, raw in zip(keys, found, strict=True) if raw is not None]
    except (ValueError, KeyError, TypeError) as exc:
        return failure("internal", f"a product is not a product's JSON: {exc}")
    return JSONResponse(products)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    nc = await connect_nats(SERVICE)
    state.update(nc=nc, kv=await open_bucket(nc, BUCKET))
    try:
        yield
    finally:
        await nc.drain()


app = Starlette(lifespan=lifespan, routes=[
    Route("/create-product", create_product, methods=["POST"]),
    Route("/list-products", list_products, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
])

if __name__ == "__main__":
    serve(app, SERVICE)
