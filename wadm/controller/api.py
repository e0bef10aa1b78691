"""The wadm API: request/reply handlers over NATS (models in `trellis.interfaces.wadm_api`).

Only the leader subscribes to ``trellis.<lattice>.wadm.api.>`` (queue group
``wadm-api``), so there is a single writer of application records; every
controller answers ``trellis.<lattice>.wadm.ping``. Malformed requests, unknown
operations, invalid manifests and refused changes get a `CtlReply` error with a
stable code and a message; manifest problems are listed in ``response.problems``.

Changes (put, deploy, undeploy, delete) read and write the apps bucket, with a
compare-and-set on every record. Reads (status, list, get, versions) answer from
the controller's memory of the bucket (`AppMemory`, kept by a watch and by the
changes this controller makes), so they keep working while the bucket's stream
elects a leader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from pydantic import BaseModel

from trellis.interfaces import subjects
from trellis.interfaces.control import CtlReply, parse_request
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.wadm_api import (
    AppList,
    AppManifest,
    AppRef,
    AppStatusReply,
    AppSummary,
    AppVersions,
    DeleteApp,
    DeleteReply,
    DeployApp,
    DeployReply,
    ListApps,
    ProblemsDetail,
    PutApp,
    PutAppReply,
    VersionInfo,
    WadmOp,
)

from ..manifest import ImageError, ManifestError, check_shared_components, load_manifest, parse_image, validate
from ..manifest.problems import errors_in, warnings_in
from . import records as rec
from .records import AppRecord, RecordError

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)


class ApiError(TrellisError):
    def __init__(self, message: str, code: ErrorCode, problems: list[str] | None = None) -> None:
        super().__init__(message, code)
        self.problems = problems or []


def _reply_error(exc: TrellisError) -> CtlReply:
    problems = getattr(exc, "problems", None)
    return CtlReply(success=False, code=exc.code, message=exc.message,
                    response=ProblemsDetail(problems=problems).model_dump() if problems else None)


#: API operations that change something: the policy is asked before they are answered
_CHANGING = frozenset({WadmOp.PUT, WadmOp.DEPLOY, WadmOp.UNDEPLOY, WadmOp.DELETE})


class WadmApi:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._sub: Any = None
        self._routes: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[BaseModel]]]] = {
            WadmOp.PUT: (PutApp, self.put),
            WadmOp.GET: (AppRef, self.get),
            WadmOp.LIST: (ListApps, self.list),
            WadmOp.VERSIONS: (AppRef, self.versions),
            WadmOp.DEPLOY: (DeployApp, self.deploy),
            WadmOp.UNDEPLOY: (AppRef, self.undeploy),
            WadmOp.DELETE: (DeleteApp, self.delete),
            WadmOp.STATUS: (AppRef, self.status),
        }

    # --- subscription (leader only) ---------------------------------------------------

    @property
    def serving(self) -> bool:
        return self._sub is not None

    async def serve(self) -> None:
        if self._sub is None:
            self._sub = await self.ctl.nc.subscribe(subjects.wadm_api_wildcard(self.ctl.lattice),
                                                    queue=subjects.WADM_API_QUEUE, cb=self._on_msg)
            log.info("serving the wadm API")

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
            log.info("stopped serving the wadm API")

    async def _on_msg(self, msg: Msg) -> None:
        if msg.reply:
            self.ctl.tasks.spawn(self._answer(msg), "api")

    async def _answer(self, msg: Msg) -> None:
        reply = await self.handle(msg.subject.rsplit(".", 1)[-1], msg.data)
        try:
            await msg.respond(reply.encode())
        except Exception as exc:
            log.debug("API reply lost: %r", exc)

    async def handle(self, op: str, data: bytes) -> CtlReply:
        route = self._routes.get(op)
        if route is None:
            return CtlReply.fail(ErrorCode.UNKNOWN_OPERATION,
                                 f"unknown wadm operation {op!r} (known: {', '.join(sorted(self._routes))})")
        model, handler = route
        try:
            request = parse_request(model, data)
        except ValueError as exc:
            return CtlReply.fail(ErrorCode.BAD_REQUEST, str(exc))
        try:
            if op in _CHANGING and self.ctl.policy.enabled:
                await self.ctl.policy.require("control", {
                    "area": "wadm", "operation": op, "request": request.model_dump(mode="json")}, f"wadm {op}")
            return CtlReply.ok(await handler(request))
        except TrellisError as exc:
            return _reply_error(exc)
        except Exception as exc:
            log.exception("wadm %s failed", op)
            return CtlReply.fail(ErrorCode.INTERNAL, f"wadm {op} failed: {exc}")

    # --- helpers --------------------------------------------------------------------

    async def _record(self, name: str, *, stored: bool = False) -> AppRecord:
        """The record of ``name``: from memory, or read from the bucket (``stored``)."""
        record = (await self.ctl.apps.get(name))[0] if stored else self.ctl.records.get(name)
        if record is None or not record.versions:
            raise ApiError(f"no application {name!r} in lattice {self.ctl.lattice!r}", ErrorCode.NOT_FOUND)
        return record

    # --- operations -------------------------------------------------------------------

    async def put(self, req: PutApp) -> PutAppReply:
        if req.base_dir is not None and not os.path.isabs(req.base_dir):
            raise ApiError(f"base_dir {req.base_dir!r} must be an absolute path", ErrorCode.BAD_REQUEST)
        try:
            manifest = load_manifest(req.manifest.encode(), base_dir=req.base_dir)
        except ManifestError as exc:
            raise ApiError(str(exc), ErrorCode.BAD_REQUEST, [str(p) for p in exc.problems]) from None
        relative = []
        for comp in manifest.components:
            try:
                if comp.image and parse_image(comp.image).is_relative_path:
                    relative.append(f'component "{comp.name}": image {comp.image!r} is a relative path')
            except ImageError:
                continue
        if relative:
            raise ApiError("relative image paths need the manifest's directory (base_dir); "
                           "'trellis app put FILE' sends it", ErrorCode.BAD_REQUEST, relative)
        problems = validate(manifest)
        warnings = [str(p) for p in warnings_in(problems)]
        name, version, digest = manifest.name, manifest.version, manifest.digest()
        record, _ = await self.ctl.apps.get(name)
        existing = record.find(version) if record is not None else None
        if existing is not None and existing.digest != digest:
            rec.add_version(record, name, version, digest, rec.now_iso())  # raises the conflict
        if existing is None:
            data = manifest.to_data()
            revision = await self.ctl.apps.put_manifest(name, version, data)
            self.ctl.memory.set_manifest(name, version, data, revision)
        now = rec.now_iso()
        created: list[bool] = []
        dropped: list[str] = []

        def change(r: AppRecord | None) -> AppRecord | None:
            new, was_created, gone = rec.add_version(r, name, version, digest, now)
            created[:] = [was_created]
            dropped[:] = gone
            return new

        await self._change(name, change)
        if dropped:
            await self.ctl.apps.delete_manifests(name, dropped)
        log.info("stored %s version %s%s", name, version, "" if created[0] else " (unchanged)")
        return PutAppReply(name=name, version=version, created=created[0], warnings=warnings)

    async def _change(self, name: str,
                      fn: Callable[[AppRecord | None], AppRecord | None]) -> tuple[AppRecord | None, AppRecord | None]:
        try:
            before, after, revision = await self.ctl.apps.change(name, fn)
        except RecordError as exc:
            raise ApiError(exc.message, exc.code) from None
        self.ctl.record_changed(name, after, revision)
        return before, after

    async def get(self, req: AppRef) -> AppManifest:
        record = await self._record(req.name)
        try:
            entry = record.require(req.version)
        except RecordError as exc:
            raise ApiError(exc.message, exc.code) from None
        data = self.ctl.memory.manifest_data(req.name, entry.version)
        if data is None:
            data = await self.ctl.apps.get_manifest(req.name, entry.version)
        if data is None:
            raise ApiError(f"the manifest of {req.name} {entry.version} is missing from the store",
                           ErrorCode.NOT_FOUND)
        return AppManifest(name=req.name, version=entry.version, deployed=record.deployed_version == entry.version,
                           manifest=data)

    async def list(self, _: ListApps) -> AppList:
        apps: list[AppSummary] = []
        for name, record in sorted(self.ctl.records.items()):
            if not record.versions:
                continue
            st = await self.ctl.app_status(name, record)
            manifest = await self.ctl.manifest(name, record.latest.version)
            apps.append(AppSummary(name=name, latest_version=record.latest.version,
                                   deployed_version=record.deployed_version, status=st.status, message=st.message,
                                   description=manifest.description if manifest is not None else None))
        return AppList(apps=apps, controller=self.ctl.info())

    async def versions(self, req: AppRef) -> AppVersions:
        record = await self._record(req.name)
        return AppVersions(name=req.name, versions=[
            VersionInfo(version=v.version, created_at=v.created_at, digest=v.digest,
                        deployed=v.version == record.deployed_version)
            for v in record.versions
        ])

    async def deploy(self, req: DeployApp) -> DeployReply:
        record = await self._record(req.name, stored=True)
        try:
            entry = record.require(req.version)
        except RecordError as exc:
            raise ApiError(exc.message, exc.code) from None
        manifest = await self.ctl.manifest(req.name, entry.version)
        if manifest is None:
            raise ApiError(f"the manifest of {req.name} {entry.version} is missing from the store",
                           ErrorCode.NOT_FOUND)
        others = [m for n, m in (await self.ctl.deployed_manifests()).items() if n != req.name]
        shared_problems = errors_in(check_shared_components(manifest, others))
        if shared_problems:
            raise ApiError(f"cannot deploy {req.name} {entry.version}: {shared_problems[0]}", ErrorCode.BAD_REQUEST,
                           [str(p) for p in shared_problems])
        now = rec.now_iso()
        before, _ = await self._change(req.name, lambda r: rec.deploy(r, entry.version, now) if r else r)
        self.ctl.executor.book.clear_app(req.name)
        was = before.deployed_version if before is not None else None
        message = (f"{req.name} {entry.version} is already deployed" if was == entry.version
                   else f"deploying {req.name} {entry.version}" + (f" (replacing {was})" if was else ""))
        log.info(message)
        return DeployReply(name=req.name, version=entry.version, message=message)

    async def undeploy(self, req: AppRef) -> DeployReply:
        record = await self._record(req.name, stored=True)
        now = rec.now_iso()
        await self._change(req.name, lambda r: rec.undeploy(r, now) if r else r)
        self.ctl.executor.book.clear_app(req.name)
        message = (f"undeploying {req.name} {record.deployed_version}" if record.deployed
                   else f"{req.name} was not deployed")
        log.info(message)
        return DeployReply(name=req.name, version=record.deployed_version, message=message)

    async def delete(self, req: DeleteApp) -> DeleteReply:
        record = await self._record(req.name, stored=True)
        now = rec.now_iso()
        if req.version is not None:
            await self._change(req.name, lambda r: rec.delete_version(r, req.version or "", now) if r else r)
            await self.ctl.apps.delete_manifests(req.name, [req.version])
            return DeleteReply(name=req.name, deleted_versions=[req.version],
                               message=f"deleted version {req.version} of {req.name}")
        if record.deployed and not req.undeploy:
            raise ApiError(f"application {req.name!r} is deployed ({record.deployed_version}): undeploy it first, "
                           "or delete with --undeploy", ErrorCode.CONFLICT)

        def drop(r: AppRecord | None) -> AppRecord | None:
            if r is not None and r.deployed and not req.undeploy:
                raise RecordError(f"application {req.name!r} was deployed meanwhile", ErrorCode.CONFLICT)
            return None

        before, _ = await self._change(req.name, drop)
        versions = [v.version for v in (before or record).versions]
        await self.ctl.apps.delete_manifests(req.name, versions)
        self.ctl.executor.book.clear_app(req.name)
        undeployed = bool(before is not None and before.deployed)
        log.info("deleted application %s (%d version(s))%s", req.name, len(versions),
                 "; undeploying it" if undeployed else "")
        return DeleteReply(name=req.name, deleted_versions=versions, undeployed=undeployed,
                           message=f"deleted {req.name}" + ("; what it placed is being removed" if undeployed else ""))

    async def status(self, req: AppRef) -> AppStatusReply:
        record = await self._record(req.name)
        return await self.ctl.app_status(req.name, record)
