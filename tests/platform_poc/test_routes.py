"""Every route of the orders application through its real HTTP port, on both backends,
and the same assertions on its baseline (the app as six always-on services, bench/baselines).

The HTTP API is the original's (github.com/redbadger/platform-poc): see
examples/platform-poc/README.md.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import nats
import pytest

from tests.harness import eventually

from .conftest import Deployed

#: deploying compiles six components on the host the first time (the tests themselves take seconds)
pytestmark = pytest.mark.timeout(900)

#: the original's seed data: (sku, name, price in pence); the first seven have 10 in stock, the rest none
SEED = [
    ("ENG-V8-500", "Car Engine", 8500), ("BRK-PD-HP", "Brake Pads", 150), ("AIR-FLT-PREM", "Air Filter", 30),
    ("SPK-PLG-HI-EFF", "Spark Plugs", 60), ("TIR-SET-AS", "Tire Set", 600), ("BAT-HC-12V", "Battery", 120),
    ("WND-WPR-AW", "Windshield Wipers", 45), ("FL-PMP-ELEC", "Fuel Pump", 220), ("RAD-HI-EFF", "Radiator", 320),
    ("HDL-LED-LONG", "Headlights", 250), ("ALT-HO-ENH", "Alternator", 300),
    ("EXH-SYS-PERF", "Exhaust System", 750), ("SUS-KIT-IMP", "Suspension Kit", 900),
    ("TRB-CHR-HP", "Turbocharger", 1400),
]
IN_STOCK = [sku for sku, _, _ in SEED[:7]]
OUT_OF_STOCK = [sku for sku, _, _ in SEED[7:]]
#: the load test's body
ORDER = [{"sku": "ENG-V8-500", "price": 1000, "quantity": 1}]


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def orders_by_number(poc: Deployed) -> dict[str, dict[str, object]]:
    r = poc.get("/orders")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return {o["order_number"]: o for o in r.json()}


# ---------------------------------------------------------------- data-init


@pytest.mark.parametrize("action", ["all", "products", "inventory", "orders"])
def test_data_init_actions_answer_200_and_can_run_again(poc: Deployed, action: str) -> None:
    r = poc.get(f"/data-init/{action}")
    assert (r.status_code, r.text) == (200, "200 OK")


def test_data_init_refuses_unknown_actions_and_other_methods(poc: Deployed) -> None:
    assert poc.get("/data-init/everything").status_code == 400
    assert poc.post("/data-init/bogus").status_code == 400  # the action is checked first, as in the original
    for method in ("POST", "PUT", "DELETE"):
        r = poc.request(method, "/data-init/all")
        assert (r.status_code, r.text) == (405, "405 Method Not Allowed")
    assert poc.get("/data-init").status_code == 404
    assert poc.get("/data-init/all/more").status_code == 404


def test_data_init_again_keeps_one_row_per_product(poc: Deployed) -> None:
    assert poc.get("/data-init/all").status_code == 200
    assert poc.get("/data-init/all").status_code == 200
    skus = [sku for sku, _, _ in SEED]
    r = poc.get("/inventory?skus=" + ",".join(skus))
    assert [a["sku"] for a in r.json()] == skus
    products = [p for p in poc.get("/products").json() if p["sku"] in skus]
    assert len(products) == len(SEED)


# ---------------------------------------------------------------- products


def test_products_lists_the_seed_catalogue(poc: Deployed) -> None:
    r = poc.get("/products")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    found = {p["sku"]: p for p in r.json()}
    for sku, name, price in SEED:
        p = found[sku]
        assert (p["name"], p["price"]) == (name, price)
        assert set(p) == {"id", "name", "description", "price", "sku"}
        assert is_uuid(p["id"]) and p["description"]


def test_products_post_stores_a_product_by_sku(poc: Deployed) -> None:
    sku = f"TEST-{uuid.uuid4().hex[:8].upper()}"
    product = {"id": str(uuid.uuid4()), "name": "Gear Knob", "description": "Walnut", "price": 1999, "sku": sku}
    r = poc.post("/products", product)
    assert (r.status_code, r.text) == (201, "201 Created")
    assert product in poc.get("/products").json()
    # the same SKU again replaces it (key = SKU)
    changed = {**product, "price": 2500}
    assert poc.post("/products", changed).status_code == 201
    mine = [p for p in poc.get("/products").json() if p["sku"] == sku]
    assert mine == [changed]


@pytest.mark.parametrize("body", [
    "not json",
    "[]",
    '{"id": "7d7a2c1e-0c5e-4c49-9c53-3d5b2b8c9f10", "name": "x", "description": "y", "price": 5}',  # no sku
    '{"id": "not-a-uuid", "name": "x", "description": "y", "price": 5, "sku": "X-1"}',
    '{"id": "7d7a2c1e-0c5e-4c49-9c53-3d5b2b8c9f10", "name": "x", "description": "y", "price": "5", "sku": "X-1"}',
    '{"id": "7d7a2c1e-0c5e-4c49-9c53-3d5b2b8c9f10", "name": "x", "description": "y", "price": 5, "sku": "A B"}',
])
def test_products_post_refuses_bad_input(poc: Deployed, body: str) -> None:
    r = poc.post("/products", content=body)
    assert (r.status_code, r.text) == (400, "400 Bad Request")


def test_products_other_methods_are_405(poc: Deployed) -> None:
    assert poc.request("DELETE", "/products").status_code == 405


# ---------------------------------------------------------------- inventory


def test_inventory_answers_stock_in_the_order_asked_and_leaves_unknown_skus_out(poc: Deployed) -> None:
    r = poc.get("/inventory?skus=TRB-CHR-HP,NO-SUCH-SKU,ENG-V8-500")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == [{"sku": "TRB-CHR-HP", "is_in_stock": False}, {"sku": "ENG-V8-500", "is_in_stock": True}]
    everything = poc.get("/inventory?skus=" + ",".join(IN_STOCK + OUT_OF_STOCK)).json()
    assert everything == ([{"sku": s, "is_in_stock": True} for s in IN_STOCK]
                          + [{"sku": s, "is_in_stock": False} for s in OUT_OF_STOCK])


def test_inventory_needs_skus(poc: Deployed) -> None:
    assert poc.get("/inventory").status_code == 400
    assert poc.get("/inventory?sku=ENG-V8-500").status_code == 400
    assert poc.get("/inventory?skus=").json() == []
    assert poc.post("/inventory?skus=ENG-V8-500").status_code == 405


def test_inventory_skus_are_bound_not_spliced(poc: Deployed) -> None:
    r = poc.get("/inventory", params={"skus": "ENG-V8-500') OR ('1'='1"})
    assert (r.status_code, r.json()) == (200, [])


# ---------------------------------------------------------------- orders


def test_orders_post_creates_an_order_and_get_lists_it(poc: Deployed) -> None:
    before = orders_by_number(poc)
    items = [{"sku": "ENG-V8-500", "price": 1000, "quantity": 1}, {"sku": "BRK-PD-HP", "price": 150, "quantity": 3}]
    r = poc.post("/orders", items)
    assert (r.status_code, r.text) == (201, "201 Created")
    after = orders_by_number(poc)
    (number,) = set(after) - set(before)
    assert is_uuid(number)
    assert after[number] == {"order_number": number, "line_items": items, "total": 1450}


def test_orders_out_of_stock_is_500_and_stores_nothing(poc: Deployed) -> None:
    before = orders_by_number(poc)
    carts: list[list[dict[str, Any]]] = [
        [{"sku": "TRB-CHR-HP", "price": 1400, "quantity": 1}],
        [{"sku": "ENG-V8-500", "price": 8500, "quantity": 1}, {"sku": "SUS-KIT-IMP", "price": 900, "quantity": 1}],
        [{"sku": "NO-SUCH-SKU", "price": 1, "quantity": 1}],
    ]
    for items in carts:
        r = poc.post("/orders", items)
        missing = ", ".join(i["sku"] for i in items if i["sku"] != "ENG-V8-500")
        assert (r.status_code, r.text) == (500, f"500 Internal Server Error: Product(s) not in stock: {missing}")
    assert orders_by_number(poc).keys() == before.keys()


@pytest.mark.parametrize("body", [
    "not json",
    "{}",
    "[]",
    '[{"price": 1, "quantity": 1}]',
    '[{"sku": "ENG-V8-500", "price": 1.5, "quantity": 1}]',
    '[{"sku": "ENG-V8-500", "price": 1, "quantity": 0}]',
    '[{"sku": "ENG-V8-500", "price": -1, "quantity": 1}]',
    '[{"sku": "ENG-V8-500", "price": 2000000000, "quantity": 2}]',
])
def test_orders_post_refuses_bad_input(poc: Deployed, body: str) -> None:
    r = poc.post("/orders", content=body)
    assert (r.status_code, r.text) == (400, "400 Bad Request")


def test_orders_other_methods_are_405_and_other_paths_404(poc: Deployed) -> None:
    assert poc.request("PUT", "/orders", ORDER).status_code == 405
    for path in ("/orders", "/products", "/inventory?skus=A", "/data-init/all"):  # as the README's table says
        r = poc.request("DELETE", path)
        assert (r.status_code, r.text) == (405, "405 Method Not Allowed")
    for path in ("/", "/order", "/orders/1", "/products/x", "/nothing-here"):
        r = poc.get(path)
        assert (r.status_code, r.text) == (404, "404 Not Found")


def test_orders_under_concurrent_load(poc: Deployed) -> None:
    """The load test's shape: 20 clients posting at once; every order succeeds and is stored."""
    before = orders_by_number(poc)
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: poc.post("/orders", ORDER).status_code, range(60)))
    assert statuses == [201] * 60
    assert len(orders_by_number(poc).keys() - before.keys()) == 60


async def test_orders_are_announced_and_notification_service_logs_them(poc: Deployed) -> None:
    nc = await nats.connect(poc.nats_url)
    try:
        sub = await nc.subscribe(poc.notification_subject)
        await nc.flush()
        before = orders_by_number(poc)
        async with httpx.AsyncClient(base_url=poc.base_url, timeout=30.0) as client:
            r = await client.post("/orders", json=ORDER)
        assert r.status_code == 201
        msg = await sub.next_msg(timeout=10.0)
        body = json.loads(msg.data)
        assert set(body) == {"order_number"}
        (number,) = orders_by_number(poc).keys() - before.keys()
        assert body["order_number"] == number
    finally:
        await nc.close()
    banner = re.compile(rf"notification-service.*\n\*+\n\*+ Received order number {number}\n")
    await eventually(lambda: banner.search(poc.component_logs()), timeout=10.0,
                     what="notification-service logging the order")


def test_everything_is_placed_by_the_manifest(poc: Deployed) -> None:
    if poc.up is None:  # the baseline has no manifest: every one of its services is still running
        assert poc.services is not None and poc.services.exited() == []
        return
    status = poc.up.status()
    assert status["status"] == "deployed", status
