"""Routing of control-interface requests to typed handlers.

A handler gets a validated request model and returns a reply payload (or a
CtlReply). Malformed or unknown requests get an error reply that says what was
wrong; a handler that raises gets an ``internal`` error reply; the host keeps
running either way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from trellis.interfaces import subjects
from trellis.interfaces.control import CtlReply, parse_request
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.policy import PolicyDenied

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]
#: asks whether a privileged request may be answered (raises `PolicyDenied` if not)
PolicyCheck = Callable[[str, str, BaseModel], Awaitable[None]]


class ControlRouter:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], tuple[type[BaseModel], Handler]] = {}
        #: routes the policy is not asked about here: read-only ones, and starts (asked later with claims)
        self._unchecked: set[tuple[str, str]] = set()
        self.policy_check: PolicyCheck | None = None

    def add(self, area: str, op: str, model: type[BaseModel], handler: Handler, *, privileged: bool = True) -> None:
        """``privileged=False``: read-only, or asked about by the handler itself."""
        self._routes[(area, op)] = (model, handler)
        if not privileged:
            self._unchecked.add((area, op))

    def ops(self, area: str) -> list[str]:
        return sorted(op for a, op in self._routes if a == area)

    async def handle(self, subject: str, data: bytes) -> CtlReply:
        area = subjects.area_of(subject)
        op = "ping" if subject.endswith(".ctl.host.ping") else subjects.op_of(subject)
        route = self._routes.get((area, op))
        if route is None:
            known = ", ".join(self.ops(area)) or "none"
            return CtlReply.fail(
                ErrorCode.UNKNOWN_OPERATION, f"unknown {area} operation {op!r} (known: {known})"
            )
        model, handler = route
        try:
            request = parse_request(model, data)
        except ValueError as exc:
            return CtlReply.fail(ErrorCode.BAD_REQUEST, str(exc))
        try:
            if self.policy_check is not None and (area, op) not in self._unchecked:
                await self.policy_check(area, op, request)
            result = await handler(request)
        except PolicyDenied as exc:
            log.warning("control %s.%s refused: %s", area, op, exc.message)
            return CtlReply.fail(exc.code, exc.message)
        except TrellisError as exc:
            return CtlReply.fail(exc.code, exc.message)
        except Exception as exc:
            log.exception("control %s.%s failed", area, op)
            return CtlReply.fail(ErrorCode.INTERNAL, f"{area} {op} failed: {exc}")
        if isinstance(result, CtlReply):
            return result
        return CtlReply.ok(result)
