"""The shared WIT packages: each parses with wasm-tools and keeps its contract."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from trellis.build import find_tool
from trellis.interfaces.wit_packages import WIT_DIR, package_dirs, package_name

PACKAGES = {
    "wasi:keyvalue@0.2.0-draft": "keyvalue",
    "wasmcloud:messaging@0.2.0": "messaging",
    "wasi:logging@0.1.0-draft": "logging",
    "wasi:config@0.2.0-draft": "config",
    "trellis:http@0.1.0": "http",
    "trellis:sql@0.1.0": "sql",
    "wasmcloud:secrets@0.1.0-draft": "secrets",
}

# Every interface and its functions: adding one is fine, but then say so here.
FUNCTIONS = {
    "wasi:keyvalue/store": {"open", "[method]bucket.get", "[method]bucket.set", "[method]bucket.delete",
                            "[method]bucket.exists", "[method]bucket.list-keys"},
    "wasi:keyvalue/atomics": {"increment"},
    "wasi:keyvalue/batch": {"get-many", "set-many", "delete-many"},
    "wasmcloud:messaging/types": set(),
    "wasmcloud:messaging/handler": {"handle-message"},
    "wasmcloud:messaging/consumer": {"request", "publish"},
    "wasi:logging/logging": {"log"},
    "wasi:config/runtime": {"get", "get-all"},
    "trellis:http/types": set(),
    "trellis:http/incoming-handler": {"handle"},
    "trellis:http/outgoing-handler": {"send"},
    "trellis:http/request-body": {"read"},
    "trellis:http/response-body": {"append"},
    "trellis:sql/types": set(),
    "trellis:sql/query": {"query", "execute", "execute-batch"},
    "wasmcloud:secrets/store": {"get"},
    "wasmcloud:secrets/reveal": {"reveal"},
}

# Signatures that providers and the host implement: changing one breaks them.
SIGNATURES = {
    "keyvalue": [
        "open: func(identifier: string) -> result<bucket, error>;",
        "get: func(key: string) -> result<option<list<u8>>, error>;",
        "set: func(key: string, value: list<u8>) -> result<_, error>;",
        "list-keys: func(cursor: option<u64>) -> result<key-response, error>;",
        "increment: func(bucket: borrow<bucket>, key: string, delta: u64) -> result<u64, error>;",
        "get-many: func(bucket: borrow<bucket>, keys: list<string>) -> "
        "result<list<option<tuple<string, list<u8>>>>, error>;",
    ],
    "messaging": [
        "handle-message: func(msg: broker-message) -> result<_, string>;",
        "request: func(subject: string, body: list<u8>, timeout-ms: u32) -> result<broker-message, string>;",
        "publish: func(msg: broker-message) -> result<_, string>;",
    ],
    "logging": ["log: func(level: level, context: string, message: string);"],
    "config": [
        "get: func(key: string) -> result<option<string>, config-error>;",
        "get-all: func() -> result<list<tuple<string, string>>, config-error>;",
    ],
    "http": [
        "handle: func(request: request) -> response;",
        "send: func(request: outgoing-request, options: option<request-options>) -> result<response, string>;",
    ],
    "sql": [
        "query: func(sql: string, params: list<sql-value>) -> result<list<row>, sql-error>;",
        "execute: func(sql: string, params: list<sql-value>) -> result<u64, sql-error>;",
    ],
    "secrets": [
        "get: func(key: string) -> result<secret, secrets-error>;",
        "reveal: func(s: borrow<secret>) -> secret-value;",
    ],
}


def _with_deps(folder: Path, tmp_path: Path) -> Path:
    """The package in ``folder`` with every other shared package as a dependency."""
    root = tmp_path / folder.name
    shutil.copytree(folder, root)
    for other in package_dirs().values():
        if other != folder:
            shutil.copytree(other, root / "deps" / other.name)
    return root


def _wit(*args: str) -> str:
    proc = subprocess.run([find_tool("wasm-tools"), "component", "wit", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_packages_are_all_found() -> None:
    found = package_dirs()
    assert {name: folder.name for name, folder in found.items()} == PACKAGES
    assert all(folder.parent == WIT_DIR for folder in found.values())


@pytest.mark.parametrize("folder", sorted(PACKAGES.values()))
def test_package_parses_with_wasm_tools(folder: str, tmp_path: Path) -> None:
    root = _with_deps(WIT_DIR / folder, tmp_path)
    text = _wit(str(root))
    assert text.startswith(f"package {package_name(WIT_DIR / folder)};")
    for signature in SIGNATURES[folder]:
        assert signature in text, f"{folder}: {signature!r} not found in:\n{text}"


def test_interfaces_and_functions(tmp_path: Path) -> None:
    root = tmp_path / "all"
    (root / "deps").mkdir(parents=True)
    (root / "main.wit").write_text("package test:all;\n")
    for folder in package_dirs().values():
        shutil.copytree(folder, root / "deps" / folder.name)
    data = json.loads(_wit(str(root), "--json"))
    packages = [p["name"] for p in data["packages"]]
    found = {}
    for iface in data["interfaces"]:
        bare = packages[iface["package"]].split("@")[0]
        found[f"{bare}/{iface['name']}"] = set(iface["functions"])
    assert found == FUNCTIONS
    worlds = {f"{packages[w['package']]}/{w['name']}" for w in data["worlds"]}
    assert {"trellis:http@0.1.0/proxy", "wasi:keyvalue@0.2.0-draft/imports", "trellis:sql@0.1.0/imports",
            "wasmcloud:messaging@0.2.0/subscriber"} <= worlds


def test_proxy_world_imports_logging_and_config(tmp_path: Path) -> None:
    text = _wit(str(_with_deps(WIT_DIR / "http", tmp_path)))
    proxy = text[text.index("world proxy"):]
    proxy = proxy[:proxy.index("}")]
    assert "import wasi:logging/logging@0.1.0-draft;" in proxy
    assert "import wasi:config/runtime@0.2.0-draft;" in proxy
    assert "export incoming-handler;" in proxy


def test_every_package_is_documented() -> None:
    docs = (WIT_DIR.parents[1] / "docs" / "components.md").read_text()
    for name in PACKAGES:
        assert f"`{name}`" in docs, f"docs/components.md does not describe {name}"
