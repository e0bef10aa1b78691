"""Python side of the `publisher` test component: wasmcloud:messaging/consumer."""

import wit_world
from wit_world.imports import consumer
from wit_world.imports.types import BrokerMessage


class WitWorld(wit_world.WitWorld):
    def send(self, subject: str, body: bytes) -> None:
        consumer.publish(BrokerMessage(subject=subject, body=body, reply_to=None))

    def ask(self, subject: str, body: bytes, timeout_ms: int) -> bytes:
        return consumer.request(subject, body, timeout_ms).body
