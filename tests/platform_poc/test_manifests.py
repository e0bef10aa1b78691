"""The example's two manifests: valid, the same application, only the storage providers differ."""

from __future__ import annotations

import importlib.util
from typing import Any

import yaml

from trellis.wadm.manifest import load_manifest, validate

from .lattice import COMPONENTS, EXAMPLE

DEFAULT = EXAMPLE / "wadm.yaml"
REDIS_POSTGRES = EXAMPLE / "wadm-redis-postgres.yaml"


def components(path: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in yaml.safe_load(path.read_text())["spec"]["components"]}


def instances(comp: dict[str, Any]) -> int:
    (scaler,) = [t for t in comp["traits"] if t["type"] == "spreadscaler"]
    return int(scaler["properties"]["instances"])


def test_both_manifests_are_valid_and_the_default_warns_only_that_sqlite_data_stays_on_one_host() -> None:
    assert validate(load_manifest(REDIS_POSTGRES)) == []
    problems = validate(load_manifest(DEFAULT))
    assert [(p.is_error, p.where) for p in problems] == [(False, 'component "sqldb"')], problems
    assert "keeps its data on" in problems[0].message  # issue 13: local state without a host requirement


def test_the_default_runs_on_nats_kv_and_sqlite_the_other_on_redis_and_postgres() -> None:
    images = {name: c["properties"]["image"] for name, c in components(DEFAULT).items()}
    assert images == {
        **{name: f"./build/{name}.wasm" for name in COMPONENTS},
        "httpserver": "builtin:http-server", "keyvalue": "builtin:keyvalue-nats",
        "sqldb": "builtin:sqldb-sqlite", "messaging": "builtin:messaging-nats",
    }
    other = {name: c["properties"]["image"] for name, c in components(REDIS_POSTGRES).items()}
    assert other == {**images, "keyvalue": "builtin:keyvalue-redis", "sqldb": "builtin:sqldb-postgres"}


def test_the_manifests_differ_only_in_the_storage_providers() -> None:
    a, b = components(DEFAULT), components(REDIS_POSTGRES)
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in ("keyvalue", "sqldb")} == \
           {k: v for k, v in b.items() if k not in ("keyvalue", "sqldb")}


def test_http_listens_on_8080() -> None:
    (link,) = [t["properties"] for t in components(DEFAULT)["httpserver"]["traits"] if t["type"] == "link"]
    assert (link["namespace"], link["package"], link["interfaces"]) == ("trellis", "http", ["incoming-handler"])
    assert link["source"]["config"][0]["properties"] == {"address": "127.0.0.1:8080"}


def test_the_request_path_is_sized_for_twenty_requests_in_flight() -> None:
    """POST /orders holds http-controller, orders-service and inventory-service calls at once."""
    comps = components(DEFAULT)
    assert all(instances(comps[c]) >= 20 for c in ("http-controller", "orders-service", "inventory-service"))


def test_sql_placeholders_are_only_placeholders() -> None:
    spec = importlib.util.spec_from_file_location("poc_schema", EXAMPLE / "common" / "schema.py")
    assert spec is not None and spec.loader is not None
    schema = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schema)
    assert schema.placeholders(3) == "$1, $2, $3"
    assert schema.placeholders(2, 3) == "($1, $2, $3), ($4, $5, $6)"
    assert schema.placeholders(1, 2, start=5) == "($5, $6)"
    assert schema.placeholders(0) == ""


def test_the_database_password_is_a_secret_granted_to_the_sql_provider_only() -> None:
    comps = components(REDIS_POSTGRES)
    url = comps["sqldb"]["properties"]["config"][0]["properties"]["url"]
    assert "@" in url and ":" not in url.split("//", 1)[1].split("@", 1)[0], "a password in the URL"
    assert [(s["name"], s["properties"]["key"]) for s in comps["sqldb"]["properties"]["secrets"]] == [
        ("password", "platform-poc-db-password")]
    assert [n for n, c in comps.items() if c["properties"].get("secrets")] == ["sqldb"]
