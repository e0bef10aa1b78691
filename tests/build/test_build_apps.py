"""Finding apps, resolving worlds and deciding what to rebuild: no componentize-py runs here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.harness import run_cli
from trellis.build import AppSpec, BuildError, BuildOptions, _resolve_world, _trim, find_apps, is_app, load_app, plan

from .conftest import HELLO_PYTHON

GREETER = HELLO_PYTHON / "greeter"


def _greeter_copy(tmp_path: Path) -> Path:
    app = tmp_path / "greeter"
    shutil.copytree(GREETER, app, ignore=shutil.ignore_patterns("build", "__pycache__"))
    return app


def test_examples_are_found() -> None:
    apps = find_apps(HELLO_PYTHON)
    assert [a.name for a in apps] == ["greeter", "hello"]
    greeter, hello = apps
    assert greeter.wit == GREETER / "wit" and greeter.world is None and greeter.module == "app"
    assert hello.wit is None and hello.world == "trellis:http/proxy@0.1.0"


def test_an_app_folder_is_one_app() -> None:
    assert [a.name for a in find_apps(GREETER)] == ["greeter"]


def test_trellis_toml_settings(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("")
    (tmp_path / "svc" / "trellis.toml").write_text(
        '[component]\nname = "svc-1"\nmodule = "main"\nworld = "trellis:http/proxy"\npython-path = ["../lib"]\n')
    app = load_app(tmp_path / "svc")
    assert app == AppSpec(root=tmp_path / "svc", name="svc-1", module="main", world="trellis:http/proxy",
                          wit=None, python_path=(tmp_path / "lib",))


@pytest.mark.parametrize(("toml", "message"), [
    ('[component]\nwrold = "x"\n', "unknown key(s) in [component]: wrold"),
    ('[component]\nname = "a b"\n', "name 'a b' must be"),
    ('[component]\nmodule = "my-app"\n', "not a Python module name"),
    ('[component]\nwit = "nowhere"\n', "wit folder 'nowhere' does not exist"),
    ('[component]\npython-path = "lib"\n', "python-path must be a list"),
    ("[component\n", "trellis.toml"),
])
def test_bad_trellis_toml(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "trellis.toml").write_text(toml)
    with pytest.raises(BuildError) as e:
        load_app(tmp_path)
    assert message in str(e.value)


def test_not_an_app(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    assert not is_app(tmp_path)
    with pytest.raises(BuildError, match="not a Trellis app"):
        load_app(tmp_path)
    with pytest.raises(BuildError, match="no Trellis apps in"):
        find_apps(tmp_path)
    with pytest.raises(BuildError, match="no such folder"):
        find_apps(tmp_path / "missing")


def test_apps_in_a_tree_need_distinct_names(tmp_path: Path) -> None:
    shutil.copytree(GREETER, tmp_path / "a" / "greeter")
    shutil.copytree(GREETER, tmp_path / "b" / "greeter")
    with pytest.raises(BuildError, match="two apps are named 'greeter'"):
        find_apps(tmp_path)


def test_apps_are_not_searched_for_inside_apps_or_build_folders(tmp_path: Path) -> None:
    shutil.copytree(GREETER, tmp_path / "one")
    shutil.copytree(GREETER, tmp_path / "one" / "nested")  # part of app "one"
    shutil.copytree(GREETER, tmp_path / "build" / "old")
    shutil.copytree(GREETER, tmp_path / ".hidden")
    assert [a.root.name for a in find_apps(tmp_path)] == ["one"]


WORLDS = {
    "example:greeter@0.1.0": ["greeter"],
    "trellis:http@0.1.0": ["proxy", "imports"],
    "trellis:other@0.1.0": ["imports"],
    "trellis:other@0.2.0": ["imports"],
}
APP = AppSpec(root=Path("/app"), name="app", wit=Path("/app/wit"))


@pytest.mark.parametrize(("requested", "expected"), [
    (None, "example:greeter/greeter@0.1.0"),
    ("greeter", "example:greeter/greeter@0.1.0"),
    ("trellis:http/proxy", "trellis:http/proxy@0.1.0"),
    ("trellis:http/proxy@0.1.0", "trellis:http/proxy@0.1.0"),
    ("trellis:other/imports@0.2.0", "trellis:other/imports@0.2.0"),
])
def test_world_resolution(requested: str | None, expected: str) -> None:
    assert _resolve_world(requested, "example:greeter@0.1.0", WORLDS, APP) == expected


@pytest.mark.parametrize(("requested", "message"), [
    ("nope", "unknown world 'nope': /app/wit defines greeter"),
    ("trellis:http/nope", "unknown world 'trellis:http/nope'; known worlds:\n  example:greeter/greeter@0.1.0"),
    ("trellis:http/proxy@9.9.9", "unknown world"),
    ("trellis:other/imports", "is ambiguous: give a version"),
])
def test_world_resolution_errors(requested: str, message: str) -> None:
    with pytest.raises(BuildError) as e:
        _resolve_world(requested, "example:greeter@0.1.0", WORLDS, APP)
    assert message in str(e.value)


def test_world_needed_without_wit() -> None:
    app = AppSpec(root=Path("/app"), name="app")
    with pytest.raises(BuildError, match="no world to build: add a wit/ folder, or set world"):
        _resolve_world(None, "trellis-build:app", WORLDS, app)
    with pytest.raises(BuildError, match="several worlds"):
        _resolve_world(None, "trellis:http@0.1.0", WORLDS, APP)


def test_missing_module_is_reported_before_building(tmp_path: Path) -> None:
    app = _greeter_copy(tmp_path)
    (app / "app.py").rename(app / "main.py")
    (app / "trellis.toml").write_text("[component]\n")  # still an app, but module 'app' is gone
    with pytest.raises(BuildError, match=r"greeter: no Python module 'app' in .*\(expected app.py\)"):
        plan(load_app(app), tmp_path / "out")


def test_broken_wit_is_reported_before_building(tmp_path: Path) -> None:
    app = _greeter_copy(tmp_path)
    (app / "wit" / "world.wit").write_text("package example:greeter;\nworld greeter { export nope; }\n")
    with pytest.raises(BuildError) as e:
        plan(load_app(app), tmp_path / "out")
    assert "WIT of greeter" in str(e.value) and "nope" in str(e.value)
    assert "/tmp/trellis-" not in str(e.value)  # the temporary copy is not what people edit


def test_unknown_world_is_reported_before_building(tmp_path: Path) -> None:
    app = load_app(_greeter_copy(tmp_path))
    with pytest.raises(BuildError, match="unknown world 'wasi:nope/x'; known worlds:"):
        plan(app, tmp_path / "out", BuildOptions(world="wasi:nope/x"))


def test_the_key_follows_every_source(tmp_path: Path) -> None:
    app_dir = _greeter_copy(tmp_path)
    out = tmp_path / "out"

    def key() -> str:
        return plan(load_app(app_dir), out, BuildOptions(cache_dir=tmp_path / "cache")).key

    first = key()
    assert key() == first
    (app_dir / "build").mkdir()
    (app_dir / "build" / "greeter.wasm").write_bytes(b"output, not source")
    (app_dir / "__pycache__").mkdir()
    (app_dir / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"cache")
    assert key() == first
    (app_dir / "app.py").write_text((app_dir / "app.py").read_text() + "\n# changed\n")
    second = key()
    assert second != first
    (app_dir / "helpers.py").write_text("X = 1\n")
    third = key()
    assert third != second
    (app_dir / "wit" / "world.wit").write_text((app_dir / "wit" / "world.wit").read_text() + "\n")
    assert key() != third
    assert plan(load_app(app_dir), out, BuildOptions(cache_dir=tmp_path / "cache")).status == "built"


def test_extra_wit_packages(tmp_path: Path) -> None:
    extra = tmp_path / "extra" / "thing"
    extra.mkdir(parents=True)
    (extra / "thing.wit").write_text("package acme:thing@1.0.0;\ninterface t { f: func(); }\n"
                                     "world w { import t; }\n")
    app = load_app(_greeter_copy(tmp_path))
    for wit_dir in (extra, extra.parent):  # a package folder, or a folder of them
        p = plan(app, tmp_path / "out", BuildOptions(world="acme:thing/w", wit_dirs=(wit_dir,)))
        assert p.world == "acme:thing/w@1.0.0"
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="no WIT package here"):
        plan(app, tmp_path / "out", BuildOptions(wit_dirs=(tmp_path / "empty",)))


COMPONENTIZE_STDERR = """\
Traceback (most recent call last):
  File "/usr/bin/componentize-py", line 8, in <module>
    sys.exit(script())
             ^^^^^^^^
AssertionError: Traceback (most recent call last):
  File "/0/app.py", line 2, in <module>
    import nonexistent_module_xyz
ModuleNotFoundError: No module named 'nonexistent_module_xyz'


Caused by:
    ModuleNotFoundError: No module named 'nonexistent_module_xyz'

Stack backtrace:
   0: <anyhow::Error>::msg::<alloc::string::String>
   1: anyhow::__private::format_err
"""


def test_componentize_errors_are_trimmed() -> None:
    assert _trim(COMPONENTIZE_STDERR) == (
        "Traceback (most recent call last):\n"
        '  File "/0/app.py", line 2, in <module>\n'
        "    import nonexistent_module_xyz\n"
        "ModuleNotFoundError: No module named 'nonexistent_module_xyz'")
    long = "\n".join(f"line {i}" for i in range(500))
    trimmed = _trim(long).splitlines()
    assert trimmed[0] == "... (440 lines omitted)" and trimmed[-1] == "line 499" and len(trimmed) == 61


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("build", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no Trellis apps in")
    assert "a trellis.toml with a [component] table" in proc.stderr  # not eaten as markup, nor escaped twice
    assert "Traceback" not in proc.stderr
