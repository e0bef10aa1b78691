"""messaging-nats with ProviderEnvironment and a real nats-server: consumer calls, subscriptions, delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from tests.harness import eventually
from trellis.interfaces.links import Link
from trellis.natsserver import NatsServer
from trellis.providers.builtin import messaging_nats
from trellis.providers.builtin._common.nats import NatsTarget
from trellis.providers.builtin.messaging_nats import SubjectNotAllowed, check_subject
from trellis.providers.sdk import Provider
from trellis.providers.sdk.testing import OutgoingCall, ProviderEnvironment

from .helpers import prober_of


def consumer_link(source: str = "comp") -> Link:
    return Link(source_id=source, target="msg", wit_namespace="wasmcloud", wit_package="messaging",
                interfaces=["consumer"], target_config=["nats"])


def handler_link(target: str = "comp", config: str = "subs") -> Link:
    return Link(source_id="msg", target=target, wit_namespace="wasmcloud", wit_package="messaging",
                interfaces=["handler"], source_config=[config])


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_publish_and_request(nats_server: NatsServer, raw: nats.NATS) -> None:
    got: asyncio.Queue[Msg] = asyncio.Queue()
    await raw.subscribe("demo.>", cb=got.put)

    async def answer(msg: Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await raw.subscribe("svc.ping", cb=answer)
    await raw.flush()
    async with ProviderEnvironment(messaging_nats.build(), provider_id="msg",
                                   configs={"nats": {"url": nats_server.url}}, links=[consumer_link()]) as env:
        msg = {"subject": "demo.one", "body": b"hello", "reply-to": "demo.replies"}
        assert await env.invoke("wasmcloud:messaging/consumer.publish", msg, source="comp") == {"ok": None}
        seen = await asyncio.wait_for(got.get(), 5)
        assert (seen.subject, seen.data, seen.reply) == ("demo.one", b"hello", "demo.replies")
        reply = await env.invoke("wasmcloud:messaging/consumer.request", "svc.ping", b"x", 2000, source="comp")
        assert reply["ok"]["body"] == b"pong:x" and reply["ok"]["reply-to"] is None
        nobody = await env.invoke("wasmcloud:messaging/consumer.request", "svc.nobody", b"x", 500, source="comp")
        assert nobody == {"err": "no responders on 'svc.nobody'"}
        bad = await env.invoke("wasmcloud:messaging/consumer.publish", {**msg, "subject": "a.*"}, source="comp")
        assert "wildcards" in bad["err"]
        stranger = await env.invoke("wasmcloud:messaging/consumer.publish", msg, source="stranger")
        assert "no link" in stranger["err"]


async def test_subscriptions_deliver_to_the_linked_component(nats_server: NatsServer, raw: nats.NATS) -> None:
    config = {"url": nats_server.url, "subscriptions": "orders.*, audit.>", "max_concurrent": "4"}
    provider = messaging_nats.build()
    async with ProviderEnvironment(provider, provider_id="msg", configs={"subs": config},
                                   links=[handler_link()]) as env:
        answers = {b"bad": {"err": "cannot handle bad"}}

        @env.on_call
        def handle(call: OutgoingCall) -> object:
            return answers.get(call.args[0]["body"], {"ok": None})

        await eventually(lambda: _subscribed(provider), what="subscriptions")
        await raw.publish("orders.created", b"one", reply="inbox.x")
        await raw.publish("audit.a.b", b"two")
        await raw.publish("other.subject", b"not delivered")
        await raw.publish("orders.created", b"bad")
        await raw.flush()
        await eventually(lambda: len(env.calls) == 3, what="three deliveries")
        calls = sorted(env.calls, key=lambda c: c.args[0]["body"])
        assert [c.args[0] for c in calls] == [
            {"subject": "orders.created", "body": b"bad", "reply-to": None},
            {"subject": "orders.created", "body": b"one", "reply-to": "inbox.x"},
            {"subject": "audit.a.b", "body": b"two", "reply-to": None},
        ]
        assert {(c.target, c.operation, c.link_name) for c in calls} == {
            ("comp", "wasmcloud:messaging/handler.handle-message", "default")}
        ok, message = await prober_of(provider).check()
        assert ok and "2 delivered, 1 failed" in message and "cannot handle bad" in message, message
        # the link goes: no more deliveries to comp; a link to another component shows when "late" arrived
        await env.delete_link(handler_link())
        await env.put_link(handler_link("other"))
        await eventually(lambda: _subscribed(provider), what="the other component's subscriptions")
        await raw.publish("orders.created", b"late")
        await eventually(lambda: len(env.calls) == 4, what="the late message")
        assert env.calls[-1].target == "other"


async def test_instances_share_each_link_in_one_queue_group(nats_server: NatsServer, raw: nats.NATS) -> None:
    """Two instances of the provider: each message reaches the component once."""
    config = {"url": nats_server.url, "subscriptions": "jobs.*"}
    providers = [messaging_nats.build(), messaging_nats.build()]
    envs = [ProviderEnvironment(p, provider_id="msg", configs={"subs": config}, links=[handler_link()])
            for p in providers]
    delivered: list[bytes] = []

    def deliver(call: Any) -> dict[str, None]:
        delivered.append(call.args[0]["body"])
        return {"ok": None}

    for env in envs:
        env.on_call(deliver)
        await env.start()
    try:
        await eventually(lambda: all(_subscribed(p) for p in providers), what="subscriptions")
        for i in range(20):
            await raw.publish("jobs.run", str(i).encode())
        await raw.flush()
        await eventually(lambda: len(delivered) >= 20, what="20 deliveries")
        await raw.publish("jobs.run", b"last")
        await eventually(lambda: b"last" in delivered, what="the last message")
        assert sorted(delivered) == sorted([str(i).encode() for i in range(20)] + [b"last"])
    finally:
        for env in envs:
            await env.shutdown()


async def test_a_bad_subscription_config_is_reported(nats_server: NatsServer) -> None:
    provider = messaging_nats.build()
    configs = {"subs": {"url": nats_server.url, "subscriptions": ""}}
    async with ProviderEnvironment(provider, provider_id="msg", configs=configs, links=[handler_link()]) as env:
        ok, message = await prober_of(provider).check()
        assert ok and "subscriptions is empty" in message, message
        await env.update_config("subs", {"url": nats_server.url, "subscriptions": "fixed.>"})
        await eventually(lambda: _subscribed(provider), what="subscriptions after the fix")


def test_subject_rules() -> None:
    lattice = NatsTarget((("url", "nats://x"),), is_lattice=True)
    other = NatsTarget((("url", "nats://x"),))
    assert check_subject("orders.created", lattice) == "orders.created"
    assert check_subject("_INBOX.abc", lattice) == "_INBOX.abc"  # replies to requests
    for subject in ("trellis.default.ctl.host.ping", "$JS.API.INFO"):
        with pytest.raises(SubjectNotAllowed, match="reserved"):
            check_subject(subject, lattice)
        assert check_subject(subject, other) == subject  # another server: the operator's business
    for bad in ("", "a..b", "a b", "a.*"):
        with pytest.raises(SubjectNotAllowed):
            check_subject(bad, other)
    assert check_subject("a.*.>", other, pattern=True) == "a.*.>"
    for bad in ("a.>.b", ">"):
        with pytest.raises(SubjectNotAllowed):
            check_subject(bad, lattice, pattern=True)


def _subscribed(provider: Provider) -> bool:
    impl = provider.callback("health").__self__
    deliveries = [d for _, d in impl.handlers.states()]
    return bool(deliveries) and all(d.subscribed.is_set() for d in deliveries)
