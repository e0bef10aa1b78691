"""products-service: the product catalogue in key-value (key: SKU, value: the product as JSON).

The bucket is opened as `products`; the link's config decides which backend
bucket that is (see ../wadm.yaml).
"""

from __future__ import annotations

import json
import re
from typing import Any

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import store
from wit_world.imports.logging import Level, log
from wit_world.imports.types import (  # platform-poc:products/types
    Error_BadRequest,
    Error_Internal,
    Error_StoreError,
    Product,
)

CONTEXT = "products-service"
BUCKET = "products"
#: SKUs are keys, so they must be keys every backend takes (NATS KV is the strictest)
SKU = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MAX_SKU = 128


def store_error(what: str, e: Err[Any]) -> Err[Any]:
    value = getattr(e.value, "value", None)
    return Err(Error_StoreError(f"{what}: {type(e.value).__name__}" + (f": {value}" if value else "")))


def to_json(product: Product) -> bytes:
    return json.dumps({"id": product.id, "name": product.name, "description": product.description,
                       "price": product.price, "sku": product.sku}, separators=(",", ":")).encode()


def from_json(key: str, raw: bytes) -> Product:
    try:
        data = json.loads(raw)
        return Product(id=str(data["id"]), name=str(data["name"]), description=str(data["description"]),
                       price=int(data["price"]), sku=str(data["sku"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise Err(Error_Internal(f"product {key!r} is not a product's JSON: {exc}")) from None


class Products(exports.Products):
    def create_product(self, product: Product) -> None:
        if len(product.sku) > MAX_SKU or not SKU.match(product.sku):
            raise Err(Error_BadRequest(
                f"sku {product.sku!r}: use up to {MAX_SKU} letters, digits, '-', '_' and inner '.'"))
        try:
            with store.open(BUCKET) as bucket:
                bucket.set(product.sku, to_json(product))
        except Err as e:
            raise store_error(f"storing {product.sku!r}", e) from None
        log(Level.INFO, CONTEXT, f"product {product.sku} stored")

    def list_products(self) -> list[Product]:
        try:
            with store.open(BUCKET) as bucket:
                keys: list[str] = []
                cursor = None
                while True:
                    page = bucket.list_keys(cursor)
                    keys.extend(page.keys)
                    cursor = page.cursor
                    if cursor is None:
                        break
                found = [(key, bucket.get(key)) for key in sorted(keys)]
        except Err as e:
            raise store_error("listing products", e) from None
        # a key deleted between listing and reading comes back as none
        return [from_json(key, raw) for key, raw in found if raw is not None]
