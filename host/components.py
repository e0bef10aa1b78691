"""Components on one host: the control operations and their events.

The manager owns the host's worker pool. A start/scale/stop/update request is
validated and acknowledged at once; the work (fetch, compile, load into the
workers) continues in the background and ends in a ``component_scaled`` or
``component_scale_failed`` event. Operations on one component are serialised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from trellis.interfaces.annotations import APP_ANNOTATION
from trellis.interfaces.artifacts import ArtifactError
from trellis.interfaces.control import (
    ComponentDescription,
    ComponentOp,
    ReuseDescription,
    ScaleComponentCommand,
    StartComponentCommand,
    StopComponentCommand,
    UpdateComponentCommand,
)
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.events import EventType
from trellis.interfaces.policy import claims_body
from trellis.kit.freemem import give_back_freed_memory
from trellis.samehost import handoff

from .artifacts import ArtifactFetcher
from .workers import WorkerPool
from .workers.messages import Boot, Load

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger(__name__)


class ComponentManager:
    def __init__(self, host: Host) -> None:
        self.host = host
        #: replaced when one changes, never changed in place (heartbeats cache each one's JSON by identity)
        self.running: dict[str, ComponentDescription] = {}
        self.specs: dict[str, StartComponentCommand] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: operations under way, by component: what each is doing now (heartbeats carry it)
        self.pending: dict[str, str] = {}
        self._queued: dict[str, int] = {}
        self.pool: WorkerPool | None = None
        self.fetcher: ArtifactFetcher | None = None
        r = host.router
        r.add("component", ComponentOp.START, StartComponentCommand, self._op_start, privileged=False)  # asked in _load
        r.add("component", ComponentOp.STOP, StopComponentCommand, self._op_stop)
        r.add("component", ComponentOp.SCALE, ScaleComponentCommand, self._op_scale)
        r.add("component", ComponentOp.UPDATE, UpdateComponentCommand, self._op_update)

    async def start(self) -> None:
        s = self.host.settings
        assert self.host.nc is not None
        self.fetcher = ArtifactFetcher(self.host.nc, self.host.lattice, s.state_dir / "artifacts",
                                       insecure_registries=s.insecure_registries,
                                       who=f"host {self.host.friendly_name}")
        boot = Boot(
            nats=s.nats.to_dict(), lattice=self.host.lattice, host_id=self.host.id,
            cache_dir=str(s.compile_cache_dir or s.state_dir / "compiled"), threads=s.worker_threads,
            instance_allocator=s.instance_allocator,
            handoff=s.tuning.calls.http_handoff and handoff.available(), policy=s.policy.to_dict(),
            policy_requester={"kind": "host", "publicKey": self.host.id, "lattice": self.host.lattice},
            log_dir=str(s.state_dir / "logs"), tuning=s.tuning,
        )
        self.pool = WorkerPool(boot, s.workers or (os.cpu_count() or 1), self.host.tasks,
                               log_dir=s.state_dir / "logs", log_env=self.host.log_env())
        await self.pool.start()

    def worker_addresses(self) -> list[str]:
        """Where this host's workers take HTTP connections handed to them (a worker with handoff
        turned off does not listen there). Providers given these also take calls from the workers."""
        if self.pool is None:
            return []
        return [handoff.worker_address(self.host.lattice, self.host.id, i) for i in range(self.pool.count)]

    async def close(self, grace_s: float) -> None:
        if self.pool is not None:
            await self.pool.close(grace_s)

    def describe(self) -> list[ComponentDescription]:
        return sorted(self.running.values(), key=lambda c: c.id)

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _stage(self, cid: str, stage: str) -> None:
        """Say what an operation under way is doing now (heartbeats carry it: `HostInfo.pending`)."""
        what = self.pending.get(cid, "").split(":")[0]
        if what:
            self.pending[cid] = f"{what}: {stage}"

    def _background(self, cid: str, work: Any, what: str) -> None:
        async def run() -> None:
            self._queued[cid] = self._queued.get(cid, 0) + 1
            self.pending[cid] = f"{what}: waiting for the component's previous operation"
            async with self._lock(cid):
                self.pending[cid] = what
                try:
                    await work()
                except Exception as exc:
                    reason = exc.message if isinstance(exc, TrellisError) else f"{exc}"
                    log.warning("component %s %s failed: %s", cid, what, reason)
                    await self.host.publish_event(EventType.COMPONENT_SCALE_FAILED, {
                        "host_id": self.host.id, "component_id": cid, "operation": what, "error": reason,
                    })
                finally:
                    self._queued[cid] -= 1
                    if not self._queued[cid]:
                        del self._queued[cid]
                        self.pending.pop(cid, None)

        self.host.tasks.spawn(run(), f"component-{what}-{cid}")

    async def _scaled(self, desc: ComponentDescription | None, cid: str, image: str) -> None:
        await self.host.publish_event(EventType.COMPONENT_SCALED, {
            "host_id": self.host.id, "component_id": cid, "image": image,
            "max_instances": desc.max_instances if desc else 0,
            "annotations": desc.annotations if desc else {}, "digest": desc.digest if desc else "",
            "reuse": desc.reuse.model_dump() if desc and desc.reuse else None,
        })

    # --- operations ------------------------------------------------------------------

    async def _op_start(self, req: StartComponentCommand) -> dict[str, Any]:
        current = self.running.get(req.component_id)
        if current is not None and current.image != req.image:
            raise TrellisError(
                f"component {req.component_id} already runs {current.image} on this host; "
                "use 'trellis update component' to change its image", ErrorCode.CONFLICT)

        async def work() -> None:
            await self._load(req)

        self._background(req.component_id, work, "start")
        return {"accepted": True, "host_id": self.host.id, "component_id": req.component_id}

    async def _load(self, req: StartComponentCommand) -> None:
        assert self.fetcher is not None and self.pool is not None
        began = time.monotonic()
        self._stage(req.component_id, "fetching")
        try:
            path, digest = await self.fetcher.fetch(req.image, req.digest)
        except ArtifactError:
            self.host.metrics.fetched(req.image, "error", time.monotonic() - began)
            raise
        self.host.metrics.fetched(req.image, "ok", time.monotonic() - began)
        self._stage(req.component_id, "checking signature and policy")
        claims = await self.host.admission.check_component(req.component_id, path, digest)
        give_back_freed_memory()  # the artifact's bytes (tens of MiB) are written to disk and gone
        await self.host.policy.require("startComponent", {
            "componentId": req.component_id, "imageRef": req.image, "digest": digest,
            "maxInstances": req.max_instances, "annotations": req.annotations, "claims": claims_body(claims),
            "wasi": req.wasi.model_dump(mode="json"),
        }, f"component {req.component_id}")
        cmd = Load(
            component_id=req.component_id, path=str(path), digest=digest, max_instances=req.max_instances,
            reuse=req.reuse, limits=req.limits, wasi=req.wasi, config=req.config, non_retryable=req.non_retryable,
            # the app it belongs to, for its invocation records (wadm's APP_ANNOTATION)
            app=req.annotations.get(APP_ANNOTATION, ""),
        )
        if req.secrets_grant is not None:  # to the workers over their pipes, never logged
            cmd.secrets = await self.host.fetch_secrets(req.secrets_grant)
        self._stage(req.component_id, "compiling and loading into the workers")
        await self.pool.load(cmd)
        prev = self.running.get(req.component_id)
        desc = ComponentDescription(
            id=req.component_id, image=req.image, digest=digest, max_instances=req.max_instances,
            annotations=req.annotations, revision=(prev.revision + 1) if prev else 0,
            reuse=ReuseDescription(max_invocations=req.reuse.max_invocations, max_idle_s=req.reuse.max_idle_s),
            issuer=claims.issuer if claims else None,
        )
        self.running[req.component_id] = desc
        self.specs[req.component_id] = req
        await self._scaled(desc, req.component_id, req.image)

    async def _op_scale(self, req: ScaleComponentCommand) -> dict[str, Any]:
        if req.component_id not in self.running:
            raise TrellisError(f"component {req.component_id} is not running on this host", ErrorCode.NOT_FOUND)
        if req.max_instances == 0:
            return await self._op_stop(StopComponentCommand(component_id=req.component_id))

        async def work() -> None:
            assert self.pool is not None
            desc = self.running[req.component_id]
            await self.pool.scale(req.component_id, req.max_instances)
            update: dict[str, Any] = {"max_instances": req.max_instances}
            if req.annotations is not None:
                update["annotations"] = req.annotations
            desc = desc.model_copy(update=update)  # replaced, not changed: heartbeats cache it by identity
            if req.component_id in self.running:
                self.running[req.component_id] = desc
            self.specs[req.component_id].max_instances = req.max_instances
            await self._scaled(desc, req.component_id, desc.image)

        self._background(req.component_id, work, "scale")
        return {"accepted": True, "host_id": self.host.id, "component_id": req.component_id}

    async def _op_stop(self, req: StopComponentCommand) -> dict[str, Any]:
        if req.component_id not in self.running:
            raise TrellisError(f"component {req.component_id} is not running on this host", ErrorCode.NOT_FOUND)

        async def work() -> None:
            assert self.pool is not None
            desc = self.running.pop(req.component_id)
            self.specs.pop(req.component_id, None)
            await self.pool.unload(req.component_id, self.host.settings.stop_timeout_s)
            await self._scaled(None, req.component_id, desc.image)

        self._background(req.component_id, work, "stop")
        return {"accepted": True, "host_id": self.host.id, "component_id": req.component_id}

    async def _op_update(self, req: UpdateComponentCommand) -> dict[str, Any]:
        spec = self.specs.get(req.component_id)
        if spec is None:
            raise TrellisError(f"component {req.component_id} is not running on this host", ErrorCode.NOT_FOUND)
        changes: dict[str, Any] = {"image": req.image, "digest": req.digest}
        if req.reuse is not None:
            changes["reuse"] = req.reuse
        new = spec.model_copy(update=changes)

        async def work() -> None:
            await self._load(new)

        self._background(req.component_id, work, "update")
        return {"accepted": True, "host_id": self.host.id, "component_id": req.component_id}
