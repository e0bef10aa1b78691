"""Python side of the `subscriber` test component: wasmcloud:messaging/handler."""

import wit_world.exports
from componentize_py_types import Err
from wit_world.imports import consumer
from wit_world.imports.types import BrokerMessage


class Handler(wit_world.exports.Handler):
    def handle_message(self, msg: BrokerMessage) -> None:
        if msg.body == b"fail":
            raise Err(f"refusing {msg.subject}: body is 'fail'")
        if msg.reply_to:
            consumer.publish(BrokerMessage(subject=msg.reply_to, body=msg.body.upper(), reply_to=None))
        else:
            consumer.publish(BrokerMessage(subject="seen." + msg.subject, body=msg.body, reply_to=None))
