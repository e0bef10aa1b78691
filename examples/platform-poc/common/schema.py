"""The SQL tables inventory-service, orders-service and data-init share.

Written once for both backends (SQLite and PostgreSQL): plain tables with
natural keys, no schemas, no generated ids, and every value bound as a `$N`
parameter. An order is two statements (its line items, then its row), and
readers join from `t_orders`, so an order becomes visible whole or not at all.
"""

INVENTORY = "t_inventory"
ORDERS = "t_orders"
LINE_ITEMS = "t_order_line_items"

CREATE_INVENTORY = f"""
CREATE TABLE IF NOT EXISTS {INVENTORY} (
    sku TEXT PRIMARY KEY,
    quantity INTEGER NOT NULL
)"""

CREATE_ORDERS = f"""
CREATE TABLE IF NOT EXISTS {ORDERS} (
    order_number TEXT PRIMARY KEY,
    total INTEGER NOT NULL
)"""

CREATE_LINE_ITEMS = f"""
CREATE TABLE IF NOT EXISTS {LINE_ITEMS} (
    order_number TEXT NOT NULL,
    line INTEGER NOT NULL,
    sku TEXT NOT NULL,
    price INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (order_number, line)
)"""


def placeholders(count: int, width: int = 1, start: int = 1) -> str:
    """`count` groups of `width` placeholders: `placeholders(2, 3)` is `($1, $2, $3), ($4, $5, $6)`.

    With `width=1` the groups are bare: `placeholders(3)` is `$1, $2, $3` (for `IN (...)`).
    Only the placeholders are built; the values are always bound.
    """
    groups = []
    n = start
    for _ in range(count):
        marks = ", ".join(f"${i}" for i in range(n, n + width))
        groups.append(f"({marks})" if width > 1 else marks)
        n += width
    return ", ".join(groups)
