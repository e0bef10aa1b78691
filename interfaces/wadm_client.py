"""WadmClient: the Python API behind ``trellis app`` (requests to the wadm controller).

    async with LatticeClient(url, lattice) as lc:
        wadm = WadmClient(lc)
        put = await wadm.put(Path("shop.yaml").read_text(), base_dir="/srv/shop")
        await wadm.deploy(put.name, put.version)
        print((await wadm.status(put.name)).status)

Requests go to the leading controller. When none serves the API but some controller
runs (a follower is taking over the lease), requests are retried for ``wait_leader_s``;
when no controller runs at all, the request fails at once.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

from . import subjects
from .client import LatticeClient
from .control import CtlReply
from .errors import ErrorCode, TrellisError
from .wadm_api import (
    AppList,
    AppManifest,
    AppRef,
    AppStatusReply,
    AppVersions,
    ControllerInfo,
    DeleteApp,
    DeleteReply,
    DeployApp,
    DeployReply,
    ListApps,
    ProblemsDetail,
    PutApp,
    PutAppReply,
    WadmOp,
)

R = TypeVar("R", bound=BaseModel)


class WadmError(TrellisError):
    """A wadm request failed; ``problems`` lists manifest problems when there are any."""

    def __init__(self, message: str, code: ErrorCode | str | None = None, problems: list[str] | None = None):
        super().__init__(message, code)
        self.problems = problems or []


#: one attempt of an API request (seconds); attempts repeat until the request's timeout
ATTEMPT_S = 3.0


class WadmClient:
    def __init__(self, client: LatticeClient, *, timeout_s: float = 10.0, wait_leader_s: float = 8.0) -> None:
        self.client = client
        self.lattice = client.lattice
        self.timeout_s = timeout_s
        self.wait_leader_s = wait_leader_s

    async def request(self, op: WadmOp, body: BaseModel, reply: type[R]) -> R:
        nc = self.client.nc
        assert nc is not None, "use 'async with LatticeClient(...)'"
        subject = subjects.wadm_api(self.lattice, op)
        payload = body.model_dump_json().encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_leader_s
        # Short attempts, repeated until the caller's timeout: a leader that died or stalled may
        # still hold the API's queue subscription for a few seconds, and every operation is safe
        # to send again (puts of one version, deploys and deletes are idempotent).
        answer_by = loop.time() + max(self.timeout_s, self.wait_leader_s)
        attempt_s = min(self.timeout_s, ATTEMPT_S)
        while True:
            try:
                msg = await nc.request(subject, payload, timeout=max(0.1, min(attempt_s, answer_by - loop.time())))
                break
            except NoRespondersError:
                # No leader serves the API. If no controller runs at all, say so at once; if some
                # do, one of them is taking over the lease: retry until it serves.
                if loop.time() >= deadline or not await self._any_controller():
                    raise WadmError(
                        f"no wadm controller answers in lattice {self.lattice!r}: start one with "
                        "'trellis wadm' (or 'trellis up')", ErrorCode.NO_RESPONDERS) from None
                await asyncio.sleep(0.1)
            except (TimeoutError, NatsTimeout):
                if loop.time() < answer_by:
                    continue
                raise WadmError(f"wadm did not answer {op} within {max(self.timeout_s, self.wait_leader_s)}s",
                                ErrorCode.TIMEOUT) from None
        ctl = CtlReply.model_validate_json(msg.data)
        if not ctl.success:
            problems: list[str] = []
            if isinstance(ctl.response, dict):
                problems = ProblemsDetail.model_validate(ctl.response).problems
            raise WadmError(ctl.message, ctl.code or ErrorCode.INTERNAL, problems)
        return reply.model_validate(ctl.response)

    async def _any_controller(self) -> bool:
        assert self.client.nc is not None
        try:
            await self.client.nc.request(subjects.wadm_ping(self.lattice), b"{}", timeout=1.0)
        except (TimeoutError, NoRespondersError, NatsTimeout):
            return False
        return True

    # --- operations ------------------------------------------------------------------

    async def put(self, manifest: str, base_dir: str | None = None) -> PutAppReply:
        """Store a new version of an application; returns the version."""
        return await self.request(WadmOp.PUT, PutApp(manifest=manifest, base_dir=base_dir), PutAppReply)

    async def get(self, name: str, version: str | None = None) -> AppManifest:
        return await self.request(WadmOp.GET, AppRef(name=name, version=version), AppManifest)

    async def list(self) -> AppList:
        return await self.request(WadmOp.LIST, ListApps(), AppList)

    async def versions(self, name: str) -> AppVersions:
        return await self.request(WadmOp.VERSIONS, AppRef(name=name, version=None), AppVersions)

    async def deploy(self, name: str, version: str | None = None) -> DeployReply:
        return await self.request(WadmOp.DEPLOY, DeployApp(name=name, version=version), DeployReply)

    async def undeploy(self, name: str) -> DeployReply:
        return await self.request(WadmOp.UNDEPLOY, AppRef(name=name, version=None), DeployReply)

    async def delete(self, name: str, version: str | None = None, *, undeploy: bool = False) -> DeleteReply:
        return await self.request(WadmOp.DELETE, DeleteApp(name=name, version=version, undeploy=undeploy),
                                  DeleteReply)

    async def status(self, name: str) -> AppStatusReply:
        return await self.request(WadmOp.STATUS, AppRef(name=name, version=None), AppStatusReply)

    async def controllers(self, timeout_s: float = 1.0) -> builtins.list[ControllerInfo]:
        """Every running controller (leader and followers), by a scatter ping."""
        replies = await self.client.scatter(subjects.wadm_ping(self.lattice), json.dumps({}).encode(),
                                            timeout_s=timeout_s)
        found = [ControllerInfo.model_validate(r.response) for r in replies if r.success]
        return sorted(found, key=lambda c: (c.role != "leader", c.id))


def problems_of(exc: BaseException) -> list[str]:
    """Manifest problems carried by an error, if any."""
    return list(getattr(exc, "problems", []) or [])


__all__ = ["WadmClient", "WadmError", "problems_of"]
