"""The wadm API: typed requests and replies (JSON), shared by the controller and the CLI.

Every operation is a request on ``subjects.wadm_api(lattice, op)`` answered by the
leading controller with a :class:`~trellis.interfaces.control.CtlReply`: ``success``,
``message`` for people, a stable ``code`` for programs and ``response`` (the reply
model below, as JSON). Errors that concern a manifest carry
:class:`ProblemsDetail` in ``response`` so a caller can list every problem.

==========  ====================  ======================================================
op          request               reply
==========  ====================  ======================================================
put         :class:`PutApp`       :class:`PutAppReply` (the stored version)
get         :class:`AppRef`       :class:`AppManifest`
list        :class:`ListApps`     :class:`AppList` (with the controller that answered)
versions    :class:`AppRef`       :class:`AppVersions`
deploy      :class:`DeployApp`    :class:`DeployReply`
undeploy    :class:`AppRef`       :class:`DeployReply`
delete      :class:`DeleteApp`    :class:`DeleteReply`
status      :class:`AppRef`       :class:`AppStatusReply`
==========  ====================  ======================================================

Every controller (leader or not) also answers a scatter ping on
``subjects.wadm_ping(lattice)`` with :class:`ControllerInfo`.

Pure types, no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

APP_NAME_PATTERN = r"^[A-Za-z0-9_\-]{1,128}$"


class WadmOp(StrEnum):
    """Operation names: the last token of the API subject."""

    PUT = "put"
    GET = "get"
    LIST = "list"
    VERSIONS = "versions"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"
    DELETE = "delete"
    STATUS = "status"


class StatusState(StrEnum):
    """Where an application (or one of its components or links) stands."""

    UNDEPLOYED = "undeployed"
    RECONCILING = "reconciling"
    DEPLOYED = "deployed"
    DEGRADED = "degraded"
    """running, but not all of it as declared: a provider unhealthy, a part waiting for the host that holds
    its data, fewer instances than declared; ``message`` names the part, the host and the cause"""
    FAILED = "failed"


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Reply(BaseModel):
    """Replies ignore unknown fields, so a newer controller does not break an older CLI."""

    model_config = ConfigDict(extra="ignore")


# --- requests ---------------------------------------------------------------------------


class PutApp(_Model):
    manifest: str = Field(min_length=1, description="the manifest as YAML or JSON text")
    base_dir: str | None = Field(
        None,
        description="absolute directory that relative image paths are resolved against (the manifest "
        "file's directory); without it a relative image path is refused",
    )


class AppRef(_Model):
    name: str = Field(pattern=APP_NAME_PATTERN)
    version: str | None = Field(default=None, description="a stored version; default: the latest (get) or "
                                                  "the deployed one (status)")


class ListApps(_Model):
    pass


class DeployApp(_Model):
    name: str = Field(pattern=APP_NAME_PATTERN)
    version: str | None = Field(default=None, description="a stored version; default: the latest")


class DeleteApp(_Model):
    name: str = Field(pattern=APP_NAME_PATTERN)
    version: str | None = Field(default=None, description="delete only this version (not the deployed one); "
                                                  "default: the whole application")
    undeploy: bool = Field(default=False, description="undeploy first if it is deployed (otherwise a deployed "
                                              "application is refused)")


# --- replies ----------------------------------------------------------------------------


class ProblemsDetail(_Reply):
    """``response`` of an error reply about a manifest: every problem, errors first."""

    problems: list[str] = []


class PutAppReply(_Reply):
    name: str
    version: str
    created: bool = Field(description="False when this exact version was already stored")
    warnings: list[str] = []


class VersionInfo(_Reply):
    version: str
    created_at: str
    digest: str = ""
    deployed: bool = False


class AppManifest(_Reply):
    name: str
    version: str
    deployed: bool
    manifest: dict[str, Any]


class AppVersions(_Reply):
    name: str
    versions: list[VersionInfo]


class DeployReply(_Reply):
    name: str
    version: str | None = None
    message: str = ""


class DeleteReply(_Reply):
    name: str
    deleted_versions: list[str] = []
    undeployed: bool = False
    message: str = ""


class PartProblem(_Reply):
    """One thing that keeps a part of the application from running as declared."""

    component: str = Field(description="the component's name in the manifest")
    host_id: str | None = None
    host_name: str | None = None
    cause: str


class ComponentDetail(_Reply):
    name: str
    id: str
    kind: str = Field(description="component or capability")
    scaler: str | None = None
    status: StatusState
    desired: int = Field(default=0, description="components: total max_instances; providers: hosts")
    running: int = Field(default=0, description="the same, counting only placements that run as declared "
                                                 "(providers: healthy)")
    message: str = ""
    local_state: bool = Field(default=False, description="a provider whose data lives on its host")
    data_host: str | None = Field(default=None, description="local state: the host (id) that holds the data")
    problems: list[PartProblem] = []


class LinkDetail(_Reply):
    source: str
    target: str
    description: str
    status: StatusState
    message: str = ""


class AppStatusReply(_Reply):
    name: str
    version: str | None = Field(default=None, description="the deployed version (None when undeployed)")
    status: StatusState
    message: str = ""
    components: list[ComponentDetail] = []
    links: list[LinkDetail] = []
    last_pass: str | None = Field(default=None, description="id of the last reconcile pass that acted on the app")
    problems: list[PartProblem] = Field(default=[], description="every part that does not run as declared, where, why")


class AppSummary(_Reply):
    name: str
    latest_version: str
    deployed_version: str | None = None
    status: StatusState
    message: str = ""
    description: str | None = None


class ControllerInfo(_Reply):
    id: str
    lattice: str
    role: Role
    leader: str | None = Field(default=None, description="id of the leading controller, as far as this one knows")
    leader_since: str | None = Field(default=None, description="when this controller became leader (ISO 8601)")
    started_at: str
    lease_ttl_s: float
    version: str = ""


class AppList(_Reply):
    apps: list[AppSummary]
    controller: ControllerInfo
    """The (leading) controller that answered."""


__all__ = [
    "APP_NAME_PATTERN",
    "AppList",
    "AppManifest",
    "AppRef",
    "AppStatusReply",
    "AppSummary",
    "AppVersions",
    "ComponentDetail",
    "ControllerInfo",
    "DeleteApp",
    "DeleteReply",
    "DeployApp",
    "DeployReply",
    "LinkDetail",
    "ListApps",
    "ProblemsDetail",
    "PutApp",
    "PutAppReply",
    "Role",
    "StatusState",
    "VersionInfo",
    "WadmOp",
]
