"""Links and config as pure data: validation, conflicts, key encoding (no NATS)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.lattice_config import (
    LatticeConfigError,
    check_config_name,
    check_config_values,
    merge_configs,
    parse_pairs,
)
from trellis.interfaces.links import Link, LinkConflictError, LinkError, check_conflicts, find_link, parse_wit_interface
from trellis.interfaces.store import config_key, decode_token, encode_token, link_key

KV_KEY = re.compile(r"^[-/_=\.a-zA-Z0-9]+$")


def mk(**kw) -> Link:
    fields = dict(source_id="comp", target="kv-redis", wit_namespace="wasi", wit_package="keyvalue",
                  interfaces=["store"])
    fields.update(kw)
    return Link.build(**fields)


def test_defaults_and_normalisation():
    lk = mk(interfaces=["store", "atomics", "store"], target_config=["a", "b", "a"])
    assert lk.name == "default"
    assert lk.interfaces == ["atomics", "store"]
    assert lk.target_config == ["a", "b"]
    assert lk.describe() == "comp -> kv-redis wasi:keyvalue/{atomics,store} (name 'default')"


@pytest.mark.parametrize("fields,words", [
    ({"interfaces": []}, "at least one interface"),
    ({"source_id": "has space"}, "invalid source id 'has space'"),
    ({"target": ""}, "invalid target id ''"),
    ({"wit_namespace": "Wasi:x"}, "invalid WIT namespace 'Wasi:x'"),
    ({"wit_package": "key_value"}, "invalid WIT package 'key_value'"),
    ({"interfaces": ["store", "no/slash"]}, "invalid WIT interface 'no/slash'"),
    ({"name": "a.b"}, "invalid link name 'a.b'"),
    ({"target_config": ["ok", "not ok"]}, "invalid config name 'not ok'"),
])
def test_bad_links_are_rejected_with_the_reason(fields, words):
    with pytest.raises(LinkError) as err:
        mk(**fields)
    assert err.value.code == ErrorCode.BAD_REQUEST
    assert words in err.value.message


def test_conflicts_need_same_group_other_target_and_overlap():
    a = mk(interfaces=["store", "atomics"])
    check_conflicts([a], mk(interfaces=["store"], target_config=["new"]))  # same target: a replacement
    check_conflicts([a], mk(target="kv-mem", interfaces=["batch"]))  # disjoint interfaces
    check_conflicts([a], mk(target="kv-mem", name="cache"))  # another link name
    check_conflicts([a], mk(target="kv-mem", wit_package="blobstore"))  # another package
    with pytest.raises(LinkConflictError) as err:
        check_conflicts([a], mk(target="kv-mem", interfaces=["atomics", "batch"]))
    msg = err.value.message
    assert err.value.code == ErrorCode.CONFLICT
    assert "comp -> kv-mem wasi:keyvalue/{atomics,batch}" in msg  # the new link
    assert "comp -> kv-redis wasi:keyvalue/{atomics,store}" in msg  # the existing one
    assert "wasi:keyvalue/atomics" in msg and "trellis link del comp wasi keyvalue --link-name default" in msg


def test_find_link_resolves_a_call():
    links = [mk(), mk(target="kv-cache", name="cache"), mk(target="blobs", wit_package="blobstore",
                                                           interfaces=["blobstore"])]
    assert find_link(links, "comp", "wasi:keyvalue/store@0.2.0-draft").target == "kv-redis"
    assert find_link(links, "comp", "wasi:keyvalue/store", name="cache").target == "kv-cache"
    assert find_link(links, "comp", "wasi:keyvalue/atomics") is None
    assert find_link(links, "other", "wasi:keyvalue/store") is None
    wi = parse_wit_interface("wasi:http/incoming-handler@0.2.0")
    assert (wi.namespace, wi.package, wi.interface, wi.version) == ("wasi", "http", "incoming-handler", "0.2.0")


def test_config_side_of_a_link():
    lk = mk(source_config=["s"], target_config=["t"])
    assert lk.config_for("comp") == ["s"] and lk.config_for("kv-redis") == ["t"] and lk.config_for("x") == []


@given(st.text(min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_key_tokens_round_trip_and_are_kv_safe(text):
    token = encode_token(text)
    assert decode_token(token) == text
    assert KV_KEY.match(token) and "." not in token


def test_key_scheme():
    assert link_key("comp", "wasi", "keyvalue", "default") == "comp.wasi.keyvalue.default"
    assert config_key("redis.conf") == "redis=2Econf"
    assert encode_token("é") == "=C3=A9"


def test_config_validation():
    assert check_config_values("c", {"b": "2", "a": "x=y\nmultiline"}) == {"a": "x=y\nmultiline", "b": "2"}
    for bad_name in ["", "has space", ".dot-first", "x" * 129]:
        with pytest.raises(LatticeConfigError):
            check_config_name(bad_name)
    for bad, words in [({"": "v"}, "non-empty"), ({"a=b": "v"}, "must not contain '='"),
                       ({"k": 1}, "must be a string"), ({"k": "x" * (65 * 1024)}, "bytes, more than")]:
        with pytest.raises(LatticeConfigError) as err:
            check_config_values("c", bad)  # type: ignore[arg-type]  # the point: refused
        assert words in err.value.message
    assert parse_pairs(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(LatticeConfigError, match="must be key=value"):
        parse_pairs(["novalue"])
    assert merge_configs([{"a": "1", "b": "1"}, {"b": "2"}]) == {"a": "1", "b": "2"}
