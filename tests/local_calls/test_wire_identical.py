"""The co-located call's shortcut: values a msgpack round trip gives back unchanged skip it.

``colocated.wire_identical`` vouches that encoding and decoding would change nothing, and
``frame_bound`` that the request would fit: both are checked here against the envelope itself.
"""

from __future__ import annotations

import math

import pytest

from trellis.host.workers.colocated import SHORT_STR, frame_bound, wire_identical
from trellis.interfaces.envelope import Invocation, Reply

IDENTICAL = [0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, 0.5, -1e300, math.inf, True, False, None, "", "ping",
             "x" * SHORT_STR]
CHANGED = [2**64, -(2**63) - 1, "é", "x" * (SHORT_STR + 1), (1, 2), [1], {"a": 1}, b"x", bytearray(b"x"),
           1 + 2j, object()]


@pytest.mark.parametrize("value", IDENTICAL, ids=repr)
def test_what_it_vouches_for_comes_back_unchanged(value):
    assert wire_identical([value])
    inv = Invocation(target="t", interface="bench:hop/target", function="ping", args=[value, 7], source="c",
                     deadline_ms=1, trace={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    frame = inv.encode()
    back = Invocation.decode(frame).args[0]
    assert type(back) is type(value) and back == value
    assert len(frame) <= frame_bound(inv)
    reply = Reply.decode(Reply(id="i", ok=True, result=value).encode()).result
    assert type(reply) is type(value) and reply == value


@pytest.mark.parametrize("value", CHANGED, ids=lambda v: type(v).__name__ + ":" + repr(v)[:12])
def test_anything_else_takes_the_round_trip(value):
    assert not wire_identical([1, value])
    assert not wire_identical((value,))


def test_the_bound_holds_for_long_names():
    inv = Invocation(target="é" * 300, interface="ns:pkg/iface", function="f" * 50, args=["a" * SHORT_STR] * 20,
                     source="s" * 100, deadline_ms=2**40, link="l" * 64, trace={"k" * 10: "v" * 400})
    assert wire_identical(inv.args) and len(inv.encode()) <= frame_bound(inv)
