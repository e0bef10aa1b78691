"""data-init: creates the SQL tables and seeds the sample products and their stock.

Every function may run any number of times: tables are created if missing,
products are written by SKU, and stock is set (not added to). Product ids are
derived from the SKU, so they stay the same across runs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from componentize_py_types import Err
from schema import CREATE_INVENTORY, CREATE_LINE_ITEMS, CREATE_ORDERS, INVENTORY, placeholders
from wit_world import exports
from wit_world.imports import query, store
from wit_world.imports.logging import Level, log
from wit_world.imports.types import SqlValue, SqlValue_Int, SqlValue_Text  # trellis:sql/types

CONTEXT = "data-init"
BUCKET = "products"
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


def failed(what: str, e: Err[Any]) -> Err[Any]:
    detail = getattr(e.value, "value", None)
    return Err(f"{what}: {type(e.value).__name__}" + (f": {detail}" if detail else ""))


def execute(what: str, sql: str, params: list[SqlValue]) -> None:
    try:
        query.execute(sql, params)
    except Err as e:
        raise failed(what, e) from None


def product_json(sku: str, name: str, description: str, price: int) -> bytes:
    product = {"id": str(uuid.uuid5(PRODUCT_IDS, sku)), "name": name, "description": description,
               "price": price, "sku": sku}
    return json.dumps(product, separators=(",", ":")).encode()


class InitFuncs(exports.InitFuncs):
    def init_all(self) -> None:
        self.init_products()
        self.init_inventory()
        self.init_orders()

    def init_products(self) -> None:
        try:
            with store.open(BUCKET) as bucket:
                for p in PRODUCTS:
                    bucket.set(p[0], product_json(*p))
        except Err as e:
            raise failed("storing products", e) from None
        log(Level.INFO, CONTEXT, f"{len(PRODUCTS)} products stored")

    def init_inventory(self) -> None:
        execute("creating the inventory table", CREATE_INVENTORY, [])
        half = len(PRODUCTS) // 2
        params: list[SqlValue] = []
        for i, (sku, *_) in enumerate(PRODUCTS):
            params += [SqlValue_Text(sku), SqlValue_Int(IN_STOCK if i < half else 0)]
        execute("stocking the inventory",
                f"INSERT INTO {INVENTORY} (sku, quantity) VALUES {placeholders(len(PRODUCTS), 2)} "
                "ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity", params)
        log(Level.INFO, CONTEXT, f"inventory stocked: {half} SKUs with {IN_STOCK}, {len(PRODUCTS) - half} with 0")

    def init_orders(self) -> None:
        execute("creating the orders table", CREATE_ORDERS, [])
        execute("creating the order line items table", CREATE_LINE_ITEMS, [])
        log(Level.INFO, CONTEXT, "order tables ready")
