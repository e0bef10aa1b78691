"""LatticeClient: the Python API behind the CLI (control operations and calls).

    async with LatticeClient("nats://127.0.0.1:4222", "default") as c:
        hosts = await c.get_hosts()
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

from . import subjects
from .connection import NatsSettings, connect
from .control import CtlReply, HostInfo, HostOp, LabelDel, LabelPut, StopHost
from .errors import ErrorCode, TrellisError


class ControlError(TrellisError):
    """A control request failed; ``code`` says how."""


class LatticeClient:
    def __init__(
        self,
        nats_url: str | NatsSettings | None = None,
        lattice: str = "default",
        *,
        timeout_s: float = 5.0,
        nc: Client | None = None,
    ) -> None:
        if isinstance(nats_url, NatsSettings):
            self.nats_settings = nats_url
        else:
            self.nats_settings = NatsSettings.from_env(url=nats_url)
        self.lattice = subjects.check_lattice(lattice)
        self.timeout_s = timeout_s
        self.nc = nc
        self._own_nc = nc is None

    async def __aenter__(self) -> "LatticeClient":
        if self.nc is None:
            self.nc = await connect(
                self.nats_settings, name="trellis-client", max_reconnect_attempts=2
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_nc and self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    # --- plumbing ------------------------------------------------------------------

    async def request(self, subject: str, body: BaseModel | dict[str, Any] | None = None,
                      timeout_s: float | None = None) -> Any:
        """Send a control request; return ``response`` or raise ControlError."""
        assert self.nc is not None, "use 'async with LatticeClient(...)'"
        if isinstance(body, BaseModel):
            payload = body.model_dump_json().encode()
        else:
            payload = json.dumps(body or {}).encode()
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout_s or self.timeout_s)
        except NoRespondersError:
            raise ControlError(f"nobody answers {subject}: is the host running?", ErrorCode.NO_RESPONDERS) from None
        except (NatsTimeout, asyncio.TimeoutError):
            raise ControlError(f"no reply on {subject} within {timeout_s or self.timeout_s}s", ErrorCode.TIMEOUT) from None
        reply = CtlReply.model_validate_json(msg.data)
        if not reply.success:
            raise ControlError(reply.message, reply.code or ErrorCode.INTERNAL)
        return reply.response

    async def scatter(self, subject: str, body: bytes = b"{}", timeout_s: float = 1.0) -> list[CtlReply]:
        """Publish once and gather every reply that arrives before the deadline."""
        assert self.nc is not None
        inbox = self.nc.new_inbox()
        replies: list[CtlReply] = []
        sub = await self.nc.subscribe(inbox)
        try:
            await self.nc.publish(subject, body, reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (NatsTimeout, asyncio.TimeoutError):
                    break
                try:
                    replies.append(CtlReply.model_validate_json(msg.data))
                except ValueError:
                    continue
        finally:
            await sub.unsubscribe()
        return replies

    # --- hosts ---------------------------------------------------------------------

    async def get_hosts(self, timeout_s: float = 1.0) -> list[HostInfo]:
        replies = await self.scatter(subjects.host_ping(self.lattice), timeout_s=timeout_s)
        hosts = [HostInfo.model_validate(r.response) for r in replies if r.success]
        return sorted(hosts, key=lambda h: (h.name, h.id))

    async def get_inventory(self, host_id: str) -> HostInfo:
        data = await self.request(subjects.host_op(self.lattice, host_id, HostOp.INVENTORY))
        return HostInfo.model_validate(data)

    async def put_label(self, host_id: str, key: str, value: str) -> HostInfo:
        data = await self.request(subjects.host_op(self.lattice, host_id, HostOp.LABEL_PUT),
                                  LabelPut(key=key, value=value))
        return HostInfo.model_validate(data)

    async def del_label(self, host_id: str, key: str) -> HostInfo:
        data = await self.request(subjects.host_op(self.lattice, host_id, HostOp.LABEL_DEL),
                                  LabelDel(key=key))
        return HostInfo.model_validate(data)

    async def stop_host(self, host_id: str, timeout_s: float | None = None) -> Any:
        return await self.request(subjects.host_op(self.lattice, host_id, HostOp.STOP),
                                  StopHost(timeout_s=timeout_s))
