"""orders-service: orders in SQL, checked against inventory-service, announced over messaging.

`create-order` asks inventory-service whether every SKU is in stock (an SKU
the inventory does not know is not), stores the order, then publishes
`{"order_number": ...}` on `platform-poc.order-notification`. A failed publish
is logged; the order stands.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from componentize_py_types import Err
from schema import LINE_ITEMS, ORDERS, placeholders
from wit_world import exports
from wit_world.imports import consumer, inventory, query
from wit_world.imports.logging import Level, log
from wit_world.imports.platform_poc_orders_types import Error_Internal, LineItem, Order
from wit_world.imports.trellis_sql_types import SqlValue, SqlValue_Int, SqlValue_Text, Statement
from wit_world.imports.wasmcloud_messaging_types import BrokerMessage

CONTEXT = "orders-service"
NOTIFICATION_SUBJECT = "platform-poc.order-notification"
S32_MAX = 2**31 - 1
#: line items per INSERT statement (5 bound parameters each)
ITEMS_PER_INSERT = 100

SELECT_ORDERS = f"""
SELECT o.order_number, o.total, li.sku, li.price, li.quantity
FROM {ORDERS} AS o JOIN {LINE_ITEMS} AS li ON li.order_number = o.order_number
ORDER BY o.order_number, li.line"""


def internal(what: str, e: Err[Any]) -> Err[Any]:
    detail = getattr(e.value, "value", e.value)
    return Err(Error_Internal(f"{what}: {type(e.value).__name__}: {detail}"))


def check_stock(items: list[LineItem]) -> None:
    skus = sorted({item.sku for item in items})
    try:
        availability = inventory.get_inventory(skus)
    except Err as e:
        raise internal("asking inventory-service", e) from None
    in_stock = {a.sku for a in availability if a.is_in_stock}
    missing = [sku for sku in skus if sku not in in_stock]
    if missing:
        log(Level.INFO, CONTEXT, f"not in stock: {', '.join(missing)}")
        raise Err(Error_Internal(f"Product(s) not in stock: {', '.join(missing)}"))


def store(order_number: str, items: list[LineItem], total: int) -> None:
    """The line items and the order's row in one transaction (one call): all of the order or none."""
    statements = []
    for start in range(0, len(items), ITEMS_PER_INSERT):
        chunk = items[start:start + ITEMS_PER_INSERT]
        params: list[SqlValue] = []
        for line, item in enumerate(chunk, start):
            params += [SqlValue_Text(order_number), SqlValue_Int(line), SqlValue_Text(item.sku),
                       SqlValue_Int(item.price), SqlValue_Int(item.quantity)]
        statements.append(Statement(f"INSERT INTO {LINE_ITEMS} (order_number, line, sku, price, quantity) "
                                    f"VALUES {placeholders(len(chunk), 5)}", params))
    statements.append(Statement(f"INSERT INTO {ORDERS} (order_number, total) VALUES ($1, $2)",
                                [SqlValue_Text(order_number), SqlValue_Int(total)]))
    try:
        query.execute_batch(statements)
    except Err as e:
        raise internal("storing the order", e) from None


def announce(order_number: str) -> None:
    body = json.dumps({"order_number": order_number}).encode()
    try:
        consumer.publish(BrokerMessage(subject=NOTIFICATION_SUBJECT, body=body, reply_to=None))
    except Err as e:
        log(Level.ERROR, CONTEXT, f"order {order_number}: publishing the notification failed: {e.value}")


def column(values: dict[str, SqlValue], name: str, kind: type[SqlValue_Int] | type[SqlValue_Text]) -> Any:
    value = values.get(name)
    if not isinstance(value, kind):
        raise Err(Error_Internal(f"orders: column {name} is {type(value).__name__}, not {kind.__name__}"))
    return value.value


class Orders(exports.Orders):
    def create_order(self, items: list[LineItem]) -> None:
        if not items:
            raise Err(Error_Internal("an order needs at least one line item"))
        total = sum(item.price * item.quantity for item in items)
        if not 0 <= total <= S32_MAX:
            raise Err(Error_Internal(f"the order's total {total} is out of range"))
        check_stock(items)
        order_number = str(uuid.uuid4())
        store(order_number, items, total)
        log(Level.INFO, CONTEXT, f"order {order_number} created: {len(items)} line item(s), total {total}")
        announce(order_number)

    def get_orders(self) -> list[Order]:
        try:
            rows = query.query(SELECT_ORDERS, [])
        except Err as e:
            raise internal("reading orders", e) from None
        found: dict[str, Order] = {}
        for row in rows:
            values = dict(row)
            number = column(values, "order_number", SqlValue_Text)
            order = found.get(number)
            if order is None:
                order = found[number] = Order(order_number=number, line_items=[],
                                              total=column(values, "total", SqlValue_Int))
            order.line_items.append(LineItem(sku=column(values, "sku", SqlValue_Text),
                                             price=column(values, "price", SqlValue_Int),
                                             quantity=column(values, "quantity", SqlValue_Int)))
        return list(found.values())
