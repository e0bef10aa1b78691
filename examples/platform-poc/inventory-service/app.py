"""inventory-service: which SKUs are in stock, from the `t_inventory` SQL table."""

from __future__ import annotations

from componentize_py_types import Err
from schema import INVENTORY, placeholders
from wit_world import exports
from wit_world.imports import query
from wit_world.imports.platform_poc_inventory_types import Availability, Error_Internal
from wit_world.imports.trellis_sql_types import SqlValue_Int, SqlValue_Text

#: SKUs asked for per statement (bound parameters; databases cap how many one statement takes)
CHUNK = 500


def quantities(skus: list[str]) -> dict[str, int]:
    """SKU -> quantity for the SKUs the table has."""
    found: dict[str, int] = {}
    for start in range(0, len(skus), CHUNK):
        chunk = skus[start:start + CHUNK]
        sql = f"SELECT sku, quantity FROM {INVENTORY} WHERE sku IN ({placeholders(len(chunk))})"
        try:
            rows = query.query(sql, [SqlValue_Text(s) for s in chunk])
        except Err as e:
            raise Err(Error_Internal(f"reading inventory: {type(e.value).__name__}: {e.value.value}")) from None
        for row in rows:
            values = dict(row)
            sku, quantity = values["sku"], values["quantity"]
            if isinstance(sku, SqlValue_Text) and isinstance(quantity, SqlValue_Int):
                found[sku.value] = quantity.value
    return found


class Inventory(exports.Inventory):
    def get_inventory(self, skus: list[str]) -> list[Availability]:
        """One answer per SKU asked for, in the order asked; SKUs the inventory does not know are left out."""
        stock = quantities(sorted(set(skus)))
        return [Availability(sku=s, is_in_stock=stock[s] > 0) for s in skus if s in stock]
