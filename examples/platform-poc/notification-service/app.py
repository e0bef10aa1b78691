"""notification-service: logs every order announced on `platform-poc.order-notification`.

The messaging provider delivers the subscription's messages to
`wasmcloud:messaging/handler.handle-message` (the subscription is the link's
config, see ../wadm.yaml).
"""

from __future__ import annotations

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.logging import Level, log
from wit_world.imports.types import BrokerMessage

CONTEXT = "notification-service"
BANNER = "*" * 76


class Handler(exports.Handler):
    def handle_message(self, msg: BrokerMessage) -> None:
        try:
            order_number = json.loads(msg.body)["order_number"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Err(f"{msg.subject}: not an order notification ({type(exc).__name__}: {exc})") from None
        log(Level.INFO, CONTEXT, f"\n{BANNER}\n****** Received order number {order_number}\n{BANNER}")
