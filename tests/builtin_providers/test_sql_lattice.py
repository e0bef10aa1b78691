"""A Python component runs SQL through builtin:sqldb-postgres and builtin:sqldb-sqlite on a lattice."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.natsserver import NatsServer

from .backends import PostgresServer
from .harness_lattice import deploy
from .helpers import sql_link


@pytest.fixture(params=["sqlite", "postgres"])
def sql_backend(request: pytest.FixtureRequest, postgres_server: PostgresServer,
                tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(provider image, link config)."""
    if request.param == "sqlite":
        return "builtin:sqldb-sqlite", {"path": str(tmp_path / "shop.db")}
    return "builtin:sqldb-postgres", {"url": request.getfixturevalue("pg_url"), "pool_max": "4"}


async def test_sql_through_a_component(nats_server: NatsServer, lattice: str, hosts, sqltool: Path,
                                       sql_backend: tuple[str, dict[str, str]]) -> None:
    image, config = sql_backend
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [h.id], providers={"sql": image}, components={"shop": sqltool})
        await c.put_config("shop-db", config)
        await c.put_link(sql_link("shop", "sql", config="shop-db"))

        create = ("CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total DOUBLE PRECISION, "
                  "note TEXT, receipt BYTEA)")
        assert await c.call("shop", "run-execute", create, []) == {"ok": 0}
        insert = "INSERT INTO orders (id, customer, total, note, receipt) VALUES ($1, $2, $3, $4, $5)"
        for params in ([{"int": 1}, {"text": "ada"}, {"float": 9.5}, {"null": None}, {"blob": b"\x01\x02"}],
                       [{"int": 2}, {"text": "bob"}, {"float": 20.0}, {"text": "gift"}, {"null": None}]):
            assert await c.call("shop", "run-execute", insert, params) == {"ok": 1}
        rows = await c.call("shop", "run-query",
                            "SELECT id, customer, total, note, receipt FROM orders WHERE total > $1 ORDER BY id",
                            [{"float": 1.0}])
        assert rows == {"ok": [
            [["id", {"int": 1}], ["customer", {"text": "ada"}], ["total", {"float": 9.5}], ["note", {"null": None}],
             ["receipt", {"blob": b"\x01\x02"}]],
            [["id", {"int": 2}], ["customer", {"text": "bob"}], ["total", {"float": 20.0}],
             ["note", {"text": "gift"}], ["receipt", {"null": None}]],
        ]}
        duplicate = await c.call("shop", "run-execute", insert,
                                 [{"int": 1}, {"text": "eve"}, {"null": None}, {"null": None}, {"null": None}])
        assert list(duplicate["err"]) == ["constraint-violation"], duplicate
        missing = await c.call("shop", "run-execute", insert,
                               [{"int": 3}, {"null": None}, {"null": None}, {"null": None}, {"null": None}])
        assert list(missing["err"]) == ["constraint-violation"], missing
        invalid = await c.call("shop", "run-query", "SELECT * FROM nowhere", [])
        assert list(invalid["err"]) == ["invalid-query"], invalid
        assert await c.call("shop", "run-execute", "UPDATE orders SET total = total + $1", [{"float": 1.0}]) == {
            "ok": 2}


async def test_sqlite_files_live_under_the_hosts_state_dir(nats_server: NatsServer, lattice: str, hosts,
                                                          sqltool: Path) -> None:
    """A relative database path is under the state directory of the host that runs the provider."""
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [h.id], providers={"sql": "builtin:sqldb-sqlite"}, components={"shop": sqltool})
        await c.put_config("shop-db", {"path": "shop.db"})
        await c.put_link(sql_link("shop", "sql", config="shop-db"))
        assert await c.call("shop", "run-execute", "CREATE TABLE t (id BIGINT)", []) == {"ok": 0}
    assert (h.settings.state_dir / "sqlite" / "shop.db").is_file()
