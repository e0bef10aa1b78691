"""What the controller stores about an application, and the rules for changing it. Pure.

An `AppRecord` lists the stored versions (oldest first) and which one is
deployed; the manifests themselves are stored separately, one per version (see
`app_store`). The functions here decide a change and return the new record, or
raise `RecordError` with a message for people; the store applies them with a
compare-and-set on the record's revision.
"""

from __future__ import annotations

import datetime as _dt

from pydantic import BaseModel, ConfigDict

from trellis.interfaces.errors import ErrorCode, TrellisError

MAX_VERSIONS = 50
"""Versions kept per application; the oldest ones that are not deployed are dropped first."""


class RecordError(TrellisError):
    """A change the record refuses; ``code`` says how (not_found, conflict, …)."""


class VersionEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    digest: str
    created_at: str


class AppRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    versions: tuple[VersionEntry, ...] = ()
    deployed_version: str | None = None
    deployed_at: str | None = None
    updated_at: str = ""

    @property
    def latest(self) -> VersionEntry:
        return self.versions[-1]

    @property
    def deployed(self) -> bool:
        return self.deployed_version is not None

    def find(self, version: str) -> VersionEntry | None:
        for v in self.versions:
            if v.version == version:
                return v
        return None

    def require(self, version: str | None) -> VersionEntry:
        """`version`, or the latest when None; raises not_found."""
        if version is None:
            return self.latest
        found = self.find(version)
        if found is None:
            known = ", ".join(v.version for v in self.versions[-5:])
            raise RecordError(f"application {self.name!r} has no version {version!r} (latest: {known})",
                              ErrorCode.NOT_FOUND)
        return found


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def add_version(record: AppRecord | None, name: str, version: str, digest: str,
                now: str) -> tuple[AppRecord, bool, list[str]]:
    """Add `version` (content `digest`). Returns (record, created, versions dropped to stay under the cap).

    Storing the same version with the same content again changes nothing; with
    other content it is refused (a version names one manifest forever).
    """
    if record is None:
        record = AppRecord(name=name)
    existing = record.find(version)
    if existing is not None:
        if existing.digest != digest:
            raise RecordError(
                f"version {version!r} of application {name!r} already exists with different content; "
                "change metadata.annotations.version (or remove it to get a version named after the content)",
                ErrorCode.CONFLICT)
        return record, False, []
    versions = [*record.versions, VersionEntry(version=version, digest=digest, created_at=now)]
    dropped: list[str] = []
    while len(versions) > MAX_VERSIONS:
        victim = next(v for v in versions if v.version != record.deployed_version)
        versions.remove(victim)
        dropped.append(victim.version)
    return record.model_copy(update={"versions": tuple(versions), "updated_at": now}), True, dropped


def deploy(record: AppRecord, version: str | None, now: str) -> AppRecord:
    entry = record.require(version)
    if record.deployed_version == entry.version:
        return record
    return record.model_copy(update={"deployed_version": entry.version, "deployed_at": now, "updated_at": now})


def undeploy(record: AppRecord, now: str) -> AppRecord:
    if record.deployed_version is None:
        return record
    return record.model_copy(update={"deployed_version": None, "deployed_at": None, "updated_at": now})


def delete_version(record: AppRecord, version: str, now: str) -> AppRecord | None:
    """The record without `version` (None when it was the last one)."""
    entry = record.require(version)
    if record.deployed_version == entry.version:
        raise RecordError(f"version {version!r} of application {record.name!r} is deployed: undeploy it, or "
                          "deploy another version, before deleting it", ErrorCode.CONFLICT)
    versions = tuple(v for v in record.versions if v.version != entry.version)
    if not versions:
        return None
    return record.model_copy(update={"versions": versions, "updated_at": now})


__all__ = [
    "MAX_VERSIONS",
    "AppRecord",
    "RecordError",
    "VersionEntry",
    "add_version",
    "delete_version",
    "deploy",
    "now_iso",
    "undeploy",
]
