"""componentize-py components: values through CPython, WASI deny-by-default."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.host.runtime import ErrorKind, InvocationError, Invoker, Limits, Preopen, WasiGrants

from .conftest import TestComponents


@pytest.fixture
def greeter(components: TestComponents) -> Invoker:
    return Invoker(components.python("greeter"))


def test_greet(greeter: Invoker) -> None:
    assert greeter.invoke("greet", ["Ann"]) == "Hello, Ann!"
    assert greeter.invoke("greet", ["Zoë 🌿"]) == "Hello, Zoë 🌿!"


def test_env_is_denied_by_default(greeter: Invoker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRELLIS_SECRET", "host-only")
    assert greeter.invoke("env-var", ["TRELLIS_SECRET"]) is None
    assert greeter.invoke("env-var", ["PATH"]) is None


def test_env_grant(components: TestComponents) -> None:
    inv = Invoker(components.python("greeter"), grants=WasiGrants(env={"GREETING": "hi"}))
    assert inv.invoke("env-var", ["GREETING"]) == "hi"
    assert inv.invoke("env-var", ["PATH"]) is None


def test_files_are_denied_by_default(greeter: Invoker, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    for path in (str(secret), "/etc/passwd", "secret.txt"):
        result = greeter.invoke("read-file", [path])
        assert "err" in result, result
    assert "err" in greeter.invoke("write-file", [str(tmp_path / "new.txt"), "x"])
    assert not (tmp_path / "new.txt").exists()


def test_read_only_preopen(components: TestComponents, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello file")
    inv = Invoker(components.python("greeter"), grants=WasiGrants(preopens=(Preopen(str(tmp_path), "/data"),)))
    assert inv.invoke("read-file", ["/data/in.txt"]) == {"ok": "hello file"}
    result = inv.invoke("write-file", ["/data/out.txt", "x"])
    assert "err" in result and "PermissionError" in result["err"]
    assert not (tmp_path / "out.txt").exists()


def test_writable_preopen(components: TestComponents, tmp_path: Path) -> None:
    grants = WasiGrants(preopens=(Preopen(str(tmp_path), "/data", writable=True),))
    inv = Invoker(components.python("greeter"), grants=grants)
    assert inv.invoke("write-file", ["/data/out.txt", "written"]) == {"ok": None}
    assert (tmp_path / "out.txt").read_text() == "written"


def test_python_exception_is_a_trap_with_guest_stderr(greeter: Invoker) -> None:
    with pytest.raises(InvocationError) as e:
        greeter.invoke("fail", ["something broke"])
    assert e.value.kind is ErrorKind.TRAP
    assert "something broke" in e.value.message  # the guest's traceback
    assert greeter.invoke("greet", ["after"]) == "Hello, after!"


def test_python_memory_bomb_is_out_of_memory(components: TestComponents) -> None:
    inv = Invoker(components.python("greeter"), limits=Limits(memory_bytes=96 * 1024 * 1024))
    assert inv.invoke("hog", [8]) == 8
    with pytest.raises(InvocationError) as e:
        inv.invoke("hog", [1000])
    assert e.value.kind is ErrorKind.OUT_OF_MEMORY
    assert "MemoryError" in e.value.message
    assert inv.invoke("greet", ["still here"]) == "Hello, still here!"


def test_python_timeout(components: TestComponents) -> None:
    inv = Invoker(components.python("greeter"), limits=Limits(timeout_s=0.2))
    with pytest.raises(InvocationError) as e:
        inv.invoke("spin")
    assert e.value.kind is ErrorKind.TIMEOUT
    assert inv.invoke("greet", ["x"]) == "Hello, x!"
