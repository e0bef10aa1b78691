"""Which capability providers keep their data on the host they run on ("local state").

A provider with local state (an embedded database file, files under the host's state
dir) must not be started on another host when its host goes away: it would start
empty there. wadm keeps such a provider on the host that holds its data (see
docs/wadm.md, "State stays where its data is"). A provider is known to have local state

* when its image is a built-in listed in `LOCAL_STATE_BUILTINS`;
* when it declares it (``Provider(..., local_state=True)`` in the SDK): the host then
  reports ``local_state`` in its `ProviderDescription`;
* when the manifest says so (``properties.state: local``); ``properties.state: shared``
  says the opposite (e.g. the file is on shared storage) and wins over both above.

Pure data, no I/O.
"""

from __future__ import annotations

LOCAL_STATE_BUILTINS: frozenset[str] = frozenset({"builtin:sqldb-sqlite"})
"""Built-in providers whose data lives in files on their host."""

STATE_LOCAL = "local"
STATE_SHARED = "shared"


def builtin_has_local_state(image: str) -> bool:
    """Whether provider reference `image` is a built-in known to keep its data on its host."""
    return image.strip() in LOCAL_STATE_BUILTINS


__all__ = ["LOCAL_STATE_BUILTINS", "STATE_LOCAL", "STATE_SHARED", "builtin_has_local_state"]
