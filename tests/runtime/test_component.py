"""Introspection and function addressing."""

from __future__ import annotations

import pytest

from trellis.host.runtime import FunctionNotFound, Invoker
from trellis.host.runtime.component import split_version

from .conftest import TestComponents


def test_addresses(components: TestComponents) -> None:
    adder = components.wat("adder")
    mul = adder.function("test:adder/math@0.1.0.mul")
    assert adder.function("test:adder/math.mul") is mul
    assert adder.function("test:adder/math#mul") is mul
    assert adder.function("test:adder/math@0.1.0#mul") is mul
    assert mul.address == "test:adder/math@0.1.0.mul"
    assert adder.function("add").interface is None
    with pytest.raises(FunctionNotFound, match="exports: .*add"):
        adder.function("test:adder/math.div")


def test_invoke_versioned_interface(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    assert inv.invoke("test:adder/math.mul", [6, 7]) == 42
    assert inv.invoke(components.wat("adder").function("add"), [6, 7]) == 13


def test_describe(components: TestComponents) -> None:
    d = components.wat("adder").describe()
    assert len(d["digest"]) == 64
    assert d["imports"] == {"interfaces": {}, "functions": [], "resources": []}
    assert d["exports"]["functions"] == [
        {"name": "add", "params": [{"name": "a", "type": "u32"}, {"name": "b", "type": "u32"}], "result": "u32"}
    ]
    math = d["exports"]["interfaces"]["test:adder/math@0.1.0"]
    assert math["functions"][0]["name"] == "mul"


def test_describe_lists_wasi_imports(components: TestComponents) -> None:
    imports = components.python("greeter").describe()["imports"]["interfaces"]
    assert any(name.startswith("wasi:cli/environment@") for name in imports)
    streams = next(v for k, v in imports.items() if k.startswith("wasi:io/streams@"))
    assert "output-stream" in streams["resources"]


def test_split_version() -> None:
    assert split_version("wasi:keyvalue/store@0.2.0-draft") == ("wasi:keyvalue/store", "0.2.0-draft")
    assert split_version("test:chain/next") == ("test:chain/next", None)
