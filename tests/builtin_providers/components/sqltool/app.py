"""Python side of the `sqltool` test component: trellis:sql/query, passed straight through."""

import wit_world
from wit_world.imports import query


class WitWorld(wit_world.WitWorld):
    def run_query(self, sql, params):
        return query.query(sql, params)

    def run_execute(self, sql, params):
        return query.execute(sql, params)
