"""Imports the host answers itself, without a link: logging and runtime config.

* ``wasi:logging/logging.log(level, context, message)`` goes to the worker's log,
  tagged with the component id.
* ``wasi:config/runtime`` (and its later name ``wasi:config/store``): ``get(key)``
  and ``get-all()`` read the component's named configs (merged in order), as
  given when the component was started.
* ``wasmcloud:secrets/store.get(key)`` hands out a handle on one of the component's
  secrets (the manifest's ``secrets:`` names; anything else is ``not-found``) and
  ``wasmcloud:secrets/reveal.reveal(handle)`` its value. The values came with the load
  command from the host, which fetched them sealed from the keyholder.
* ``trellis:http/response-body.append(chunk)`` adds to the body of the response
  the running ``incoming-handler.handle`` call returns (``CallContext.append_body``);
  ``trellis:http/request-body.read(max)`` reads a request body too large to pass
  whole (``CallContext.read_request_body``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from trellis.host.runtime.imports import CURRENT_CALL, NOT_IN_HANDLER, REQUEST_BODY, RESPONSE_BODY, HostResource
from trellis.interfaces.resources import unversioned
from trellis.interfaces.secrets import SecretValue

log = logging.getLogger("trellis.component")

_LEVELS = {
    "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
    "error": logging.ERROR, "critical": logging.CRITICAL,
}
_CONFIG = {"wasi:config/runtime", "wasi:config/store"}
SECRETS_STORE = "wasmcloud:secrets/store"
SECRETS_REVEAL = "wasmcloud:secrets/reveal"
#: interfaces (unversioned) answered here, never over the lattice
SERVED_HERE = frozenset({"wasi:logging/logging", *_CONFIG, RESPONSE_BODY, REQUEST_BODY, SECRETS_STORE,
                         SECRETS_REVEAL})


class LocalImports:
    def __init__(self, component_id: str, config: Callable[[], dict[str, str]],
                 secrets: dict[str, SecretValue] | None = None) -> None:
        self.component_id = component_id
        self.config = config
        self.secrets = secrets or {}

    def serve(self, interface: str, function: str, args: list[Any],
              held: list[tuple[Any, ...]] | None = None) -> tuple[bool, Any]:
        """(served here, result). Log lines go to ``held`` instead of the log when given
        (a call that may be run again logs once: see ``emit``)."""
        name = unversioned(interface)
        if name == "wasi:logging/logging" and function == "log":
            level, context, message = args
            line = (_LEVELS.get(str(level), logging.INFO), "[%s] %s: %s", self.component_id, context, message)
            if held is None:
                log.log(*line, extra={"component": self.component_id})
            else:
                held.append(line)
            return True, None
        if name == RESPONSE_BODY and function == "append":
            ctx = CURRENT_CALL.get()
            return True, {"err": NOT_IN_HANDLER} if ctx is None else ctx.append_body(bytes(args[0]))
        if name == REQUEST_BODY and function == "read":
            ctx = CURRENT_CALL.get()
            return True, b"" if ctx is None else ctx.read_request_body(args[0])
        if name == SECRETS_STORE and function == "get":
            secret = self.secrets.get(str(args[0]))
            return True, {"err": "not-found"} if secret is None else {"ok": HostResource(secret)}
        if name == SECRETS_REVEAL and function == "reveal":
            value = args[0].reveal() if isinstance(args[0], SecretValue) else None
            if value is None:
                raise ValueError("reveal: not a secret handle")
            return True, {"bytes": value} if isinstance(value, bytes) else {"string": value}
        if name in _CONFIG:
            values = self.config()
            if function == "get":
                return True, {"ok": values.get(args[0])}
            if function == "get-all":
                return True, {"ok": [[k, v] for k, v in sorted(values.items())]}
        return False, None

    @staticmethod
    def emit(held: list[tuple[Any, ...]]) -> None:
        """Log the lines ``serve`` held back."""
        for line in held:
            log.log(*line, extra={"component": line[2]})
