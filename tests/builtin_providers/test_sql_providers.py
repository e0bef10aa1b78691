"""sqldb-sqlite and sqldb-postgres with ProviderEnvironment: one SQL text, one behaviour, two real databases."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trellis.providers.builtin import sqldb_postgres, sqldb_sqlite
from trellis.providers.builtin._common.sql import sqlite_placeholders
from trellis.providers.sdk import Provider
from trellis.providers.sdk.testing import ProviderEnvironment

from ..harness import eventually
from .backends import PostgresServer, free_port
from .helpers import prober_of, sql_link

Q = "trellis:sql/query.query"
X = "trellis:sql/query.execute"


@dataclass
class Backend:
    name: str
    build: Callable[[], Provider]
    config: dict[str, str]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, postgres_server: PostgresServer, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", sqldb_sqlite.build, {"path": str(tmp_path / "app.db")})
    return Backend("postgres", sqldb_postgres.build, {"url": request.getfixturevalue("pg_url")})


@pytest.fixture
async def env(backend: Backend) -> AsyncIterator[ProviderEnvironment]:
    async with ProviderEnvironment(backend.build(), provider_id="sql", configs={"sqlcfg": backend.config},
                                   links=[sql_link()]) as e:
        yield e


def i(v: int) -> dict[str, Any]:
    return {"int": v}


def t(v: str) -> dict[str, Any]:
    return {"text": v}


NULL = {"null": None}
USERS = ("CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE, age BIGINT, "
         "score DOUBLE PRECISION, photo BYTEA, active BOOLEAN)")
INSERT = "INSERT INTO users (id, email, age, score, photo, active) VALUES ($1, $2, $3, $4, $5, $6)"


async def test_create_insert_and_query_back(env: ProviderEnvironment, backend: Backend) -> None:
    assert await env.invoke(X, USERS, [], source="comp") == {"ok": 0}
    one = [i(1), t("ada@example.org"), i(36), {"float": 1.5}, {"blob": b"\x00\xff"}, {"bool": True}]
    assert await env.invoke(X, INSERT, one, source="comp") == {"ok": 1}
    two = [i(2), t("bob@example.org"), NULL, {"float": -2.0}, NULL, {"bool": False}]
    assert await env.invoke(X, INSERT, two, source="comp") == {"ok": 1}
    rows = await env.invoke(Q, "SELECT id, email, age, score, photo, active FROM users ORDER BY id", [], source="comp")
    true, false = ({"bool": True}, {"bool": False}) if backend.name == "postgres" else (i(1), i(0))
    assert rows == {"ok": [
        [["id", i(1)], ["email", t("ada@example.org")], ["age", i(36)], ["score", {"float": 1.5}],
         ["photo", {"blob": b"\x00\xff"}], ["active", true]],
        [["id", i(2)], ["email", t("bob@example.org")], ["age", NULL], ["score", {"float": -2.0}],
         ["photo", NULL], ["active", false]],
    ]}
    # numbered placeholders in any order; '$1' inside a literal is text, not a placeholder
    rows = await env.invoke(Q, "SELECT email, '$1' AS lit FROM users WHERE age > $2 AND email <> $1",
                            [t("nobody"), i(30)], source="comp")
    assert rows == {"ok": [[["email", t("ada@example.org")], ["lit", t("$1")]]]}
    assert await env.invoke(Q, "SELECT id FROM users WHERE id = $1", [i(99)], source="comp") == {"ok": []}
    returning = await env.invoke(Q, "UPDATE users SET age = $1 WHERE id = $2 RETURNING id, age",
                                 [i(40), i(1)], source="comp")
    assert returning == {"ok": [[["id", i(1)], ["age", i(40)]]]}
    assert await env.invoke(X, "UPDATE users SET score = score * 2", [], source="comp") == {"ok": 2}
    assert await env.invoke(X, "DELETE FROM users WHERE id = $1", [i(2)], source="comp") == {"ok": 1}


async def test_constraint_violations(env: ProviderEnvironment) -> None:
    await env.invoke(X, USERS, [], source="comp")
    await env.invoke(X, "CREATE TABLE posts (id BIGINT PRIMARY KEY, author BIGINT NOT NULL REFERENCES users (id))",
                     [], source="comp")
    await env.invoke(X, INSERT, [i(1), t("a@x"), NULL, NULL, NULL, NULL], source="comp")
    for sql, params in [
        (INSERT, [i(2), t("a@x"), NULL, NULL, NULL, NULL]),  # unique email
        (INSERT, [i(1), t("b@x"), NULL, NULL, NULL, NULL]),  # primary key
        (INSERT, [i(3), NULL, NULL, NULL, NULL, NULL]),  # not null
        ("INSERT INTO posts (id, author) VALUES ($1, $2)", [i(1), i(42)]),  # foreign key
    ]:
        result = await env.invoke(X, sql, params, source="comp")
        assert list(result["err"]) == ["constraint-violation"], (sql, params, result)
        assert result["err"]["constraint-violation"]  # the database's message


async def test_invalid_queries(env: ProviderEnvironment) -> None:
    await env.invoke(X, USERS, [], source="comp")
    for what, sql, params in [
        (Q, "SELEC 1", []),
        (Q, "SELECT * FROM no_such_table", []),
        (Q, "SELECT no_such_column FROM users", []),
        (Q, "SELECT id FROM users WHERE id = $1", []),  # too few parameters
        (Q, "SELECT id FROM users WHERE id = $1", [i(1), i(2)]),  # too many
        (X, "INSERT INTO users (id, email) VALUES ($1, $2); SELECT 1", [i(1), t("x")]),  # params: one statement
        (Q, "SELECT 1; SELECT 2", []),
    ]:
        result = await env.invoke(what, sql, params, source="comp")
        assert list(result.get("err", {})) == ["invalid-query"], (sql, params, result)
    bad_value = await env.invoke(Q, "SELECT $1", [{"date": "2024-01-01"}], source="comp")
    assert "is not a sql-value" in bad_value["err"]["invalid-query"]


async def test_a_script_is_one_transaction(env: ProviderEnvironment) -> None:
    script = ("CREATE TABLE a (x BIGINT);\nINSERT INTO a (x) VALUES (1);\n-- a comment; with a semicolon\n"
              "INSERT INTO a (x) VALUES (2), (3);")
    assert await env.invoke(X, script, [], source="comp") == {"ok": 2}  # the last statement's count
    assert await env.invoke(Q, "SELECT count(*) AS n FROM a", [], source="comp") == {"ok": [[["n", i(3)]]]}
    failing = "CREATE TABLE b (y BIGINT); INSERT INTO b (y) VALUES (1); INSERT INTO missing VALUES (1)"
    assert list((await env.invoke(X, failing, [], source="comp"))["err"]) == ["invalid-query"]
    gone = await env.invoke(Q, "SELECT * FROM b", [], source="comp")  # rolled back with the rest
    assert list(gone["err"]) == ["invalid-query"], gone


async def test_callers_without_a_link_and_unreachable_databases(backend: Backend, tmp_path: Path) -> None:
    dead = ({"url": f"postgresql://nobody@127.0.0.1:{free_port()}/x", "connect_timeout_s": "1"}
            if backend.name == "postgres" else {"path": "/proc/no/such/dir/x.db"})
    provider = backend.build()
    links = [sql_link("alive", config="alive"), sql_link("dead", config="dead")]
    async with ProviderEnvironment(provider, provider_id="sql", configs={"alive": backend.config, "dead": dead},
                                   links=links) as env:
        stranger = await env.invoke(Q, "SELECT 1", [], source="stranger")
        assert "no link" in stranger["err"]["connection-failed"]
        down = await env.invoke(Q, "SELECT 1", [], source="dead")
        assert list(down["err"]) == ["connection-failed"], down
        ok, message = await prober_of(provider).check()
        assert not ok and ("/proc/no/such/dir" in message or "127.0.0.1" in message), message
        assert await env.invoke(Q, "SELECT 1 AS one", [], source="alive") == {"ok": [[["one", i(1)]]]}
        await env.delete_link(links[1])
        ok, message = await prober_of(provider).check()
        assert ok, message


# --- SQLite only -------------------------------------------------------------------------------


async def test_sqlite_default_file_per_component_in_wal_mode(tmp_path: Path) -> None:
    links = [sql_link("shop"), sql_link("blog", config="blogcfg")]
    async with ProviderEnvironment(sqldb_sqlite.build(), provider_id="sql", lattice="prod",
                                   config={"data_dir": str(tmp_path)}, configs={"blogcfg": {}}, links=links) as env:
        await env.invoke(X, "CREATE TABLE t (x BIGINT)", [], source="shop")
        await env.invoke(X, "CREATE TABLE t (y TEXT)", [], source="blog")  # its own file: no clash
        shop = tmp_path / "prod" / "shop.db"
        assert shop.exists() and (tmp_path / "prod" / "blog.db").exists()
        assert sqlite3.connect(shop).execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_memory_databases_belong_to_one_link() -> None:
    links = [sql_link("a", config="mem"), sql_link("b", config="mem")]
    async with ProviderEnvironment(sqldb_sqlite.build(), provider_id="sql", configs={"mem": {"path": ":memory:"}},
                                   links=links) as env:
        assert await env.invoke(X, "CREATE TABLE t (x BIGINT)", [], source="a") == {"ok": 0}
        assert await env.invoke(X, "CREATE TABLE t (x BIGINT)", [], source="b") == {"ok": 0}


async def test_sqlite_statement_past_the_deadline_is_interrupted(tmp_path: Path) -> None:
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
            "SELECT count(*) AS c FROM n")
    async with ProviderEnvironment(sqldb_sqlite.build(), provider_id="sql",
                                   configs={"sqlcfg": {"path": str(tmp_path / "x.db")}}, links=[sql_link()]) as env:
        result = await env.invoke(Q, slow, [], source="comp", timeout_s=0.5)
        assert "deadline" in result["err"]["other"], result
        # the database's thread is free again at once
        assert await env.invoke(Q, "SELECT 2 AS two", [], source="comp", timeout_s=2) == {"ok": [[["two", i(2)]]]}


async def test_sqlite_reads_run_on_the_loop_and_the_rest_on_the_databases_thread(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    provider = sqldb_sqlite.build()
    configs = {"sqlcfg": {"path": str(path), "busy_timeout_ms": "10000"},
               "impatient": {"path": str(path), "busy_timeout_ms": "50"},
               "rollback": {"path": str(tmp_path / "r.db"), "journal_mode": "delete"}}
    links = [sql_link(), sql_link("impatient", config="impatient"), sql_link("rollback", config="rollback")]
    async with ProviderEnvironment(provider, provider_id="sql", configs=configs, links=links) as env:
        impl = provider.callback("health").__self__

        def db(path_: Path, busy: int = 5000) -> sqldb_sqlite.SqliteDb:
            return next(impl.dbs.opened(k) for k in impl.dbs.keys()  # noqa: SIM118 (SharedResources, not a dict)
                        if k.path == str(path_) and k.busy_timeout_ms == busy)

        assert await env.invoke(X, "CREATE TABLE t (x BIGINT)", [], source="comp") == {"ok": 0}
        assert await env.invoke(Q, "SELECT count(*) AS n FROM t", [], source="comp") == {"ok": [[["n", i(0)]]]}
        main = db(path, 10000)
        assert main.stats == {"loop_reads": 1, "moved_reads": 0, "busy_waits": 0}
        # a read far over the loop's budget is stopped there and run again on the thread: same answer
        big = ("SELECT count(*) AS c FROM (WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n "
               "WHERE k < 300000) SELECT k FROM n)")
        assert await env.invoke(Q, big, [], source="comp") == {"ok": [[["c", i(300000)]]]}
        assert main.stats["moved_reads"] == 1
        # another process holds the write lock: a write waits on the thread (up to busy_timeout_ms) ...
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("INSERT INTO t VALUES (1)")
            write = asyncio.create_task(env.invoke(X, "INSERT INTO t VALUES ($1)", [i(2)], source="comp"))
            await eventually(lambda: main.stats["busy_waits"] > 0, what="the write to wait for the lock")
            # ... while one with a short busy timeout gives up
            given_up = await env.invoke(X, "INSERT INTO t VALUES ($1)", [i(3)], source="impatient")
            assert "locked" in given_up["err"]["other"], given_up
            holder.execute("COMMIT")
            assert await write == {"ok": 1}
        finally:
            holder.close()
        assert await env.invoke(Q, "SELECT x FROM t ORDER BY x", [], source="comp") == {
            "ok": [[["x", i(1)]], [["x", i(2)]]]}
        # a rollback-journal database: readers wait for writers, so everything runs on its thread
        await env.invoke(X, "CREATE TABLE r (y BIGINT)", [], source="rollback")
        assert await env.invoke(Q, "SELECT count(*) AS n FROM r", [], source="rollback") == {"ok": [[["n", i(0)]]]}
        assert db(tmp_path / "r.db").stats["loop_reads"] == 0


def test_sqlite_reads_only() -> None:
    reads = sqldb_sqlite.reads_only
    assert all(reads(q) for q in ("SELECT 1", " select a from t", "(SELECT 1) UNION SELECT 2", "-- c\nSELECT 1",
                                  "/* c */ VALUES (1)"))
    assert not any(reads(q) for q in ("WITH x AS (SELECT 1) SELECT * FROM x", "INSERT INTO t SELECT 1",
                                      "UPDATE t SET a = 1 RETURNING a", "SELECTED", "PRAGMA x", ""))


def test_sqlite_placeholders() -> None:
    assert sqlite_placeholders("SELECT $1, $2") == "SELECT ?1, ?2"
    assert sqlite_placeholders("WHERE a = $12 AND b = $3") == "WHERE a = ?12 AND b = ?3"
    assert sqlite_placeholders("SELECT '$1', \"$2\", `$3`, [$4], $5") == "SELECT '$1', \"$2\", `$3`, [$4], ?5"
    assert sqlite_placeholders("SELECT 'it''s $1' || $1") == "SELECT 'it''s $1' || ?1"
    assert sqlite_placeholders("SELECT $1 -- $2\n, /* $3 */ $4") == "SELECT ?1 -- $2\n, /* $3 */ ?4"
    assert sqlite_placeholders("SELECT a$1, $$x$$, $name") == "SELECT a$1, $$x$$, $name"


def test_sqlite_script_splitting() -> None:
    split = sqldb_sqlite.split_statements
    assert split("SELECT 1") == ["SELECT 1"]
    assert split("SELECT 1; SELECT 'a;b';\n\n-- done\n") == ["SELECT 1;", " SELECT 'a;b';"]
    trigger = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; UPDATE t SET x = 2; END;"
    assert split(trigger + " SELECT 1") == [trigger, " SELECT 1"]


# --- PostgreSQL only ---------------------------------------------------------------------------


async def test_postgres_types_without_a_wit_case_travel_as_text(pg_url: str) -> None:
    async with ProviderEnvironment(sqldb_postgres.build(), provider_id="sql", configs={"sqlcfg": {"url": pg_url}},
                                   links=[sql_link()]) as env:
        await env.invoke(X, "CREATE TABLE ev (at TIMESTAMPTZ, amount NUMERIC(10, 2), id UUID, doc JSONB, "
                            "tags TEXT[], day DATE)", [], source="comp")
        params = [t("2024-05-01 12:00:00+00"), t("12.50"), t("7f1b8a5e-6d1e-4c1b-9a43-2f6f4b7c0d11"),
                  t('{"a": 1}'), t("2024-05-01")]
        assert await env.invoke(X, "INSERT INTO ev VALUES ($1, $2, $3, $4, ARRAY['x', 'y'], $5)", params,
                                source="comp") == {"ok": 1}
        rows = await env.invoke(Q, "SET TIME ZONE 'UTC'; SELECT 1", [], source="comp")
        assert list(rows["err"]) == ["invalid-query"]  # one statement per query
        rows = await env.invoke(Q, "SELECT at AT TIME ZONE 'UTC' AS at, amount, id, doc, tags, day, "
                                   "amount * 2 AS twice FROM ev", [], source="comp")
        assert rows == {"ok": [[["at", t("2024-05-01 12:00:00")], ["amount", t("12.50")],
                                ["id", t("7f1b8a5e-6d1e-4c1b-9a43-2f6f4b7c0d11")], ["doc", t('{"a": 1}')],
                                ["tags", t('["x", "y"]')], ["day", t("2024-05-01")], ["twice", t("25.00")]]]}
        mistyped = await env.invoke(Q, "SELECT * FROM ev WHERE amount > $1 AND id = $2", [t("1"), i(5)],
                                    source="comp")
        assert "query argument $2" in mistyped["err"]["invalid-query"], mistyped


async def test_postgres_links_with_equal_settings_share_a_pool(pg_url: str) -> None:
    provider = sqldb_postgres.build()
    links = [sql_link("a"), sql_link("b")]
    async with ProviderEnvironment(provider, provider_id="sql", configs={"sqlcfg": {"url": pg_url}},
                                   links=links) as env:
        for source in ("a", "b"):
            assert await env.invoke(Q, "SELECT 1 AS one", [], source=source) == {"ok": [[["one", i(1)]]]}
        impl = provider.callback("health").__self__
        assert len(impl.pools.keys()) == 1


B = "trellis:sql/query.execute-batch"


def st(sql: str, *params: Any) -> dict[str, Any]:
    return {"sql": sql, "params": list(params)}


async def test_batch_is_one_transaction(env: ProviderEnvironment, backend: Backend) -> None:
    """execute-batch: every statement or none; a failure names its statement."""
    assert await env.invoke(X, USERS, [], source="comp") == {"ok": 0}
    user = "INSERT INTO users (id, email) VALUES ($1, $2)"
    assert await env.invoke(B, [st(user, i(1), t("a@x")), st(user, i(2), t("b@x")),
                                st("UPDATE users SET age = $1", i(7))], source="comp") == {"ok": [1, 1, 2]}
    # the second statement breaks the unique email: the first is rolled back with it
    out = await env.invoke(B, [st(user, i(3), t("c@x")), st(user, i(4), t("a@x"))], source="comp")
    assert list(out["err"]) == ["constraint-violation"], out
    assert out["err"]["constraint-violation"].startswith("statement 2: "), out
    rows = await env.invoke(Q, "SELECT id FROM users ORDER BY id", [], source="comp")
    assert rows == {"ok": [[["id", i(1)]], [["id", i(2)]]]}
    out = await env.invoke(B, [st(user, i(5), t("e@x")), st("INSERT INTO nope VALUES ($1)", i(1))], source="comp")
    assert list(out["err"]) == ["invalid-query"] and out["err"]["invalid-query"].startswith("statement 2: ")
    out = await env.invoke(B, [st(user, i(5), {"nope": 1})], source="comp")  # a bad value, before running
    assert out == {"err": {"invalid-query": "statement 1: parameter $2: {'nope': 1} is not a sql-value"}}
    assert await env.invoke(B, [], source="comp") == {"ok": []}
    assert (await env.invoke(Q, "SELECT count(*) AS n FROM users", [], source="comp"))["ok"] == [[["n", i(2)]]]
