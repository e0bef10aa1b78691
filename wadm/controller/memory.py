"""The apps bucket in memory: every record and every stored manifest, as last seen.

Every controller, leader or follower, keeps one (`Controller` feeds it from
`AppStore.watch_apps` and from its own writes), so that a controller that becomes
the leader acts at once from what it already holds, even while the apps stream
cannot be read (its JetStream leader was lost and the cluster is electing a new
one: seconds during which every read of the bucket times out). The API's read-only
operations (status, list, get, versions) answer from it too.

Each key's revision is kept, so an entry that arrives late (the watch delivering
an older write after the controller applied its own newer one) never replaces a
newer one.
"""

from __future__ import annotations

import logging
from typing import Any

from ..manifest import Manifest, ManifestError, manifest_from_data
from .app_store import app_key, manifest_key
from .records import AppRecord

log = logging.getLogger(__name__)


class AppMemory:
    def __init__(self) -> None:
        self.records: dict[str, AppRecord] = {}
        """Application name → its record (versions, the deployed one)."""
        self._manifests: dict[tuple[str, str], dict[str, Any]] = {}
        self._parsed: dict[tuple[str, str], Manifest] = {}
        self._revisions: dict[str, int] = {}

    def _newer(self, key: str, revision: int | None) -> bool:
        """Whether an entry of ``key`` at ``revision`` is newer than what is held (and note it).

        None: a key found gone after a reconnect, or read outside the watch: always applied."""
        if revision is None:
            return True
        if revision <= self._revisions.get(key, 0):
            return False
        self._revisions[key] = revision
        return True

    # --- changes ----------------------------------------------------------------------

    def set_record(self, name: str, record: AppRecord | None, revision: int | None) -> bool:
        """A record as stored at ``revision`` (None: deleted). False if something newer is held."""
        if not self._newer(app_key(name), revision):
            return False
        if record is None:
            self.records.pop(name, None)
        else:
            self.records[name] = record
        return True

    def record_deleted(self, name: str, after_revision: int) -> None:
        """This controller deleted the record it had read at ``after_revision``: gone now, and no
        entry up to that revision (one the watch has not delivered yet) brings it back."""
        key = app_key(name)
        self._revisions[key] = max(self._revisions.get(key, 0), after_revision)
        self.records.pop(name, None)

    def set_manifest(self, name: str, version: str, data: dict[str, Any] | None, revision: int | None) -> bool:
        """A manifest as stored at ``revision`` (None: deleted). False if something newer is held."""
        if not self._newer(manifest_key(name, version), revision):
            return False
        key = (name, version)
        self._parsed.pop(key, None)
        if data is None:
            self._manifests.pop(key, None)
        else:
            self._manifests[key] = data
        return True

    # --- reading ----------------------------------------------------------------------

    def manifest_data(self, name: str, version: str) -> dict[str, Any] | None:
        return self._manifests.get((name, version))

    def manifest(self, name: str, version: str) -> Manifest | None:
        """The manifest of a version, parsed (once), or None when not held or unreadable."""
        key = (name, version)
        found = self._parsed.get(key)
        if found is None:
            data = self._manifests.get(key)
            if data is None:
                return None
            try:
                found = manifest_from_data(data)
            except ManifestError as exc:
                log.error("stored manifest %s %s is unreadable: %s", name, version, exc)
                return None
            self._parsed[key] = found
        return found

    @property
    def manifest_count(self) -> int:
        return len(self._manifests)
