"""Declaring providers: mistakes are caught when declared, with messages that say what to do."""

from __future__ import annotations

import pytest

from trellis.providers.sdk import DefinitionError, Provider, export


def test_function_and_method_exports():
    p = Provider("kv")

    @p.export("wasi:keyvalue/store@0.2.0-draft")
    async def get(bucket, key, *, ctx, **kwargs):
        return None

    @p.export("wasi:keyvalue/store", "set")
    def set_value(bucket, key, value, **kwargs):
        return None

    @p.export("wasi:keyvalue/store")
    def list_keys(bucket, ctx=None, **kwargs):  # ctx may also be an ordinary parameter
        return []

    class Atomics:
        @export("wasi:keyvalue/atomics")
        async def increment(self, bucket, key, delta, *, ctx, **kwargs):
            return delta

        def helper(self):  # not exported
            pass

    p.add(Atomics())
    assert sorted(p.exports) == ["wasi:keyvalue/atomics.increment", "wasi:keyvalue/store.get",
                                 "wasi:keyvalue/store.list-keys", "wasi:keyvalue/store.set"]
    d = p.find("wasi:keyvalue/store@0.2.0", "get")  # versions do not matter for lookup
    assert d is not None and d.is_async and d.params == ("bucket", "key") and d.version == "0.2.0-draft"
    assert p.find("wasi:keyvalue/store", "list-keys").params == ("bucket",)
    assert not p.find("wasi:keyvalue/store", "set").is_async
    assert p.find("wasi:keyvalue/atomics", "increment").params == ("bucket", "key", "delta")
    assert p.find("wasi:keyvalue/store", "nope") is None and p.find("garbage", "get") is None


def test_export_of_a_whole_class_per_interface():
    p = Provider("counter")

    @p.export("example:counter/api")
    class Counter:
        def __init__(self):
            self.n = 0

        def bump(self, by, **kwargs):
            self.n += by
            return self.n

        async def read_value(self, **kwargs):
            return self.n

    assert sorted(p.exports) == ["example:counter/api.bump", "example:counter/api.read-value"]


def test_marked_functions_register_explicitly():
    @export("x:y/z")
    def f(a, **kwargs):
        return a

    assert f(1) == 1  # still a plain function
    p = Provider("p", exports=[f])
    assert list(p.exports) == ["x:y/z.f"]
    with pytest.raises(DefinitionError, match="exported twice"):
        p.add(f)


@pytest.mark.parametrize("make,words", [
    (lambda: export("x:y/z", "f")(lambda a: a), "must accept **kwargs"),
    (lambda: export("not-an-interface")(lambda **kw: 1), "invalid WIT interface"),
    (lambda: export("x:y/z", "Bad_Name")(lambda **kw: 1), "invalid WIT function name"),
])
def test_bad_exports(make, words):
    with pytest.raises(DefinitionError) as err:
        make()
    assert words in str(err.value)


def test_more_bad_declarations():
    p = Provider("p")
    with pytest.raises(DefinitionError, match="keyword-only parameter 'extra'"):
        @p.export("x:y/z")
        def f(a, *, extra, **kwargs): ...
    with pytest.raises(DefinitionError, match="is a generator"):
        @p.export("x:y/z")
        async def g(**kwargs):
            yield 1
    with pytest.raises(DefinitionError, match="not marked with @export"):
        p.add(lambda **kw: 1)
    with pytest.raises(DefinitionError, match="is a class: pass an instance"):
        p.add(type("C", (), {}))
    with pytest.raises(DefinitionError, match="no methods marked"):
        p.add(object())
    with pytest.raises(DefinitionError, match="invalid provider id"):
        Provider("has space")
    with pytest.raises(DefinitionError, match="import: invalid WIT interface"):
        Provider("p2", imports=["nope"])


def test_callbacks_are_checked_when_declared():
    p = Provider("p")

    @p.on_link_put
    async def put(link, config, *, info, **kwargs): ...

    with pytest.raises(DefinitionError, match="already"):
        p.on_link_put(lambda link, config, **kw: None)
    with pytest.raises(DefinitionError, match=r"cannot be called as \(link, \*, info, \*\*kwargs\)"):
        p.on_link_deleted(lambda link, config, extra, **kw: None)
    with pytest.raises(DefinitionError, match="must accept \\*\\*kwargs"):
        p.health(lambda: True)
    p.on_shutdown(lambda grace_s, **kw: None)
    p.on_config_updated(lambda name, values, **kw: None)
    assert p.callback("on_link_put") is put and p.callback("on_start") is None


def test_imports_are_declared_and_checked():
    p = Provider("http-server", imports=["wasi:http/incoming-handler@0.2.0"])
    assert p.declared_imports == ("wasi:http/incoming-handler",)
    assert p.check_import("wasi:http/incoming-handler.handle") == ("wasi:http/incoming-handler", "handle")
    with pytest.raises(ValueError, match="does not import wasi:keyvalue/store"):
        p.check_import("wasi:keyvalue/store.get")


def test_provider_subjects_match_the_shared_subject_module():
    """The SDK spells its health/ping subjects locally until interfaces/subjects.py has them; never differently."""
    from trellis.interfaces import subjects
    from trellis.providers.sdk import provider_health, provider_ping

    assert provider_ping("lat", "kv") == "trellis.lat.prov.kv.ping"
    assert provider_health("lat", "kv", "h1") == "trellis.lat.prov.kv.h1.health"
    if hasattr(subjects, "provider_ping"):
        assert subjects.provider_ping("lat", "kv") == provider_ping("lat", "kv")
    if hasattr(subjects, "provider_health"):
        assert subjects.provider_health("lat", "kv", "h1") == provider_health("lat", "kv", "h1")
