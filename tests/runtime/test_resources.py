"""Host-defined resources bound generically (kvclient, a Python component
importing a small key-value interface with `resource bucket`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from trellis.host.runtime import ErrorKind, HostResource, InvocationError, Invoker, MissingLink, ReusePolicy
from trellis.host.runtime.codec import Plain

from .conftest import TestComponents

STORE = "test:kv/store"


@dataclass
class Bucket:
    name: str
    data: dict[str, str]
    closed: bool = False


@dataclass
class KvHost:
    """An import handler serving test:kv/store from dicts."""

    buckets: dict[str, dict[str, str]]
    opened: list[Bucket] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, interface: str, function: str, args: list[Plain]) -> Plain:
        assert interface == STORE
        self.calls.append((interface, function))
        if function == "open":
            if args[0] not in self.buckets:
                return {"err": {"no-such-store": None}}
            bucket = Bucket(args[0], self.buckets[args[0]])
            self.opened.append(bucket)
            return {"ok": HostResource(bucket)}
        if function == "[method]bucket.get":
            bucket, key = args
            assert isinstance(bucket, Bucket) and not bucket.closed
            return {"ok": bucket.data.get(key)}
        if function == "[method]bucket.set":
            bucket, key, value = args
            if bucket.name == "read-only":
                return {"err": "access-denied"}
            bucket.data[key] = value
            return {"ok": None}
        if function == "[resource-drop]bucket":
            args[0].closed = True
            return None
        raise MissingLink(interface, function)


@pytest.fixture
def kv(components: TestComponents) -> Invoker:
    return Invoker(components.python("kvclient"))


def test_describe_names_the_resource(components: TestComponents) -> None:
    store = components.python("kvclient").describe()["imports"]["interfaces"][STORE]
    assert store["resources"] == ["bucket"]
    methods = {f["name"]: f for f in store["functions"]}
    assert set(methods) == {"open", "[method]bucket.get", "[method]bucket.set"}
    assert methods["[method]bucket.get"]["params"][0]["type"] == f"borrow<{STORE}.bucket>"
    assert methods["open"]["result"].startswith(f"result<{STORE}.bucket, variant {{")


def test_open_get_drop_cycle(kv: Invoker) -> None:
    host = KvHost({"b1": {"k": "v"}})
    assert kv.invoke("lookup", ["b1", "k"], host) == {"ok": "v"}
    assert kv.invoke("lookup", ["b1", "missing"], host) == {"ok": None}
    assert [f for _, f in host.calls] == [
        "open", "[method]bucket.get", "[resource-drop]bucket",
        "open", "[method]bucket.get", "[resource-drop]bucket",
    ]  # fmt: skip
    # the handler got its own objects back, and each was dropped once
    assert len(host.opened) == 2 and all(b.closed for b in host.opened)


def test_methods_see_the_same_object(kv: Invoker) -> None:
    host = KvHost({"b1": {"src": "payload"}})
    assert kv.invoke("copy", ["b1", "src", "dst"], host) == {"ok": "payload"}
    assert host.buckets["b1"] == {"src": "payload", "dst": "payload"}
    assert len(host.opened) == 1 and host.opened[0].closed


def test_error_variants_cross_both_ways(kv: Invoker) -> None:
    host = KvHost({"read-only": {"src": "x"}})
    assert kv.invoke("lookup", ["nope", "k"], host) == {"err": "NoSuchStore"}
    assert kv.invoke("copy", ["read-only", "src", "dst"], host) == {"err": "AccessDenied"}
    assert kv.invoke("copy", ["read-only", "nothing", "dst"], host) == {"err": "no key 'nothing'"}


def test_handler_must_wrap_resources(kv: Invoker) -> None:
    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        return {"ok": object()}  # not a HostResource

    with pytest.raises(InvocationError) as e:
        kv.invoke("lookup", ["b1", "k"], handler)
    assert e.value.kind is ErrorKind.IMPORT_FAILED
    assert (e.value.interface, e.value.function) == (STORE, "open")
    assert "HostResource" in e.value.message


def test_unserved_method_names_itself(kv: Invoker) -> None:
    host = KvHost({"b1": {}})

    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        if function == "[method]bucket.get":
            raise MissingLink(interface, function)
        return host(interface, function, args)

    with pytest.raises(InvocationError) as e:
        kv.invoke("lookup", ["b1", "k"], handler)
    assert e.value.kind is ErrorKind.MISSING_LINK
    assert e.value.function == "[method]bucket.get"
    assert kv.invoke("lookup", ["b1", "k"], host) == {"ok": None}


def test_resources_across_reused_instance(components: TestComponents) -> None:
    inv = Invoker(components.python("kvclient"), reuse=ReusePolicy(max_invocations=10))
    host = KvHost({"b1": {"k": "v"}})
    for _ in range(3):
        assert inv.invoke("lookup", ["b1", "k"], host) == {"ok": "v"}
    assert all(b.closed for b in host.opened)
    assert inv.stats.instantiations == 1
