"""`trellis build` of the examples: valid components that the runtime can call."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import run_cli
from trellis.build import BuildOptions, BuildResult, build_all, find_tool
from trellis.host.runtime import CompileCache, Invoker, LoadedComponent, RuntimeEngine, load_component

from .conftest import HELLO_PYTHON

# A cold session builds both examples (~10 s each) and compiles them (~10 s each).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _load(result: BuildResult, engine: RuntimeEngine, cache: CompileCache) -> LoadedComponent:
    return load_component(engine, result.path.read_bytes(), cache)


def test_examples_build_into_valid_components(hello_python: dict[str, BuildResult]) -> None:
    assert set(hello_python) == {"greeter", "hello"}
    assert hello_python["greeter"].world == "example:greeter/greeter@0.1.0"
    assert hello_python["hello"].world == "trellis:http/proxy@0.1.0"
    for result in hello_python.values():
        assert result.status in ("built", "cached")
        assert result.path.name == f"{result.app.name}.wasm" and result.size == result.path.stat().st_size
        proc = subprocess.run([find_tool("wasm-tools"), "validate", str(result.path)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_greeter_is_callable(hello_python: dict[str, BuildResult], runtime_engine: RuntimeEngine,
                             runtime_cache: CompileCache) -> None:
    invoker = Invoker(_load(hello_python["greeter"], runtime_engine, runtime_cache))
    assert invoker.invoke("example:greeter/greet.hello", ["Ann"]) == "Hello, Ann!"
    assert invoker.invoke("example:greeter/greet.strict-hello", ["Bo"]) == {"ok": "Hello, Bo!"}
    assert invoker.invoke("example:greeter/greet.strict-hello", ["  "]) == {"err": "name is empty"}


def test_hello_answers_http(hello_python: dict[str, BuildResult], runtime_engine: RuntimeEngine,
                            runtime_cache: CompileCache) -> None:
    loaded = _load(hello_python["hello"], runtime_engine, runtime_cache)
    imports = loaded.describe()["imports"]["interfaces"]
    assert {"trellis:http/outgoing-handler@0.1.0", "wasi:logging/logging@0.1.0-draft",
            "wasi:config/runtime@0.2.0-draft"} <= set(imports)
    request = {"method": "GET", "path-with-query": "/greet?name=Ann", "headers": [["accept", b"*/*"]], "body": b""}
    response = Invoker(loaded).invoke("trellis:http/incoming-handler.handle", [request])
    assert response == {
        "status": 200,
        "headers": [["content-type", b"text/plain; charset=utf-8"]],
        "body": b"Hello from Trellis\nYou asked for GET /greet?name=Ann\n",
    }


def test_unchanged_rebuild_is_skipped(hello_python: dict[str, BuildResult], build_cache: Path) -> None:
    before = {name: r.path.stat().st_mtime_ns for name, r in hello_python.items()}
    out = hello_python["greeter"].path.parent
    again = build_all(HELLO_PYTHON, out, BuildOptions(cache_dir=build_cache))
    assert [(r.app.name, r.status) for r in again] == [("greeter", "unchanged"), ("hello", "unchanged")]
    assert {r.app.name: r.path.stat().st_mtime_ns for r in again} == before
    assert all(r.seconds < 5 for r in again)


def test_cli_builds_from_the_cache(hello_python: dict[str, BuildResult], build_cache: Path,
                                   tmp_path: Path) -> None:
    args = ["build", str(HELLO_PYTHON / "greeter"), "-o", str(tmp_path), "--cache-dir", str(build_cache)]
    first = run_cli(*args, "--json")
    assert first.returncode == 0, first.stderr
    [row] = json.loads(first.stdout)
    assert row["status"] == "cached" and row["world"] == "example:greeter/greeter@0.1.0"
    assert Path(row["path"]).read_bytes() == hello_python["greeter"].path.read_bytes()
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("unchanged greeter") and str(tmp_path / "greeter.wasm") in second.stdout


def test_broken_app_gives_a_clear_error(tmp_path: Path) -> None:
    app = tmp_path / "broken"
    shutil.copytree(HELLO_PYTHON / "greeter", app, ignore=shutil.ignore_patterns("build", "__pycache__"))
    source = (app / "app.py").read_text()
    (app / "app.py").write_text(source.replace("from wit_world import exports",
                                               "from wit_world import exports\nimport no_such_module_here"))
    proc = run_cli("build", str(app), "--cache-dir", str(tmp_path / "cache"), timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: componentize-py for broken failed:")
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in proc.stderr
    assert f'File "{app}/app.py", line' in proc.stderr  # the real file, not componentize-py's /0/
    assert "Stack backtrace" not in proc.stderr and "sys.exit(script())" not in proc.stderr
    assert len(proc.stderr.splitlines()) < 20
    assert not (app / "build" / "broken.wasm").exists()
