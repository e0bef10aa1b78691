"""State stays where its data is: the rule for providers whose data lives on their host. Pure.

A capability provider has *local state* when the manifest says ``properties.state: local``,
or (unless it says ``shared``) when its image is a built-in known to keep files on its
host (`trellis.interfaces.provider_state`) or a running placement of it declares so.

Such a provider, placed on one host (a spreadscaler with one instance), is *pinned* to
the host that first ran it: wadm records the host's state dir id (`StatePin`, in its
store) and from then on places it only on a host with that state dir id, whatever
host id it has after a restart. While that host is gone, nothing is started elsewhere
(it would start with an empty database); the workload is ``degraded`` with that reason.

The manifest can say otherwise: when the spread that places it no longer accepts the
pinned host (its requirements do not match that host's labels), the pin no longer holds,
the provider is placed as the spreads say and the pin moves to its new host. A
provider spread over several hosts (or a daemonscaler) is not pinned: every copy has
its own data, which `trellis app validate` warns about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trellis.interfaces.provider_state import STATE_LOCAL, STATE_SHARED, builtin_has_local_state

from ..commands import PinState
from ..observed import APP_ANNOTATION, Observed, StatePin
from .workload import ReconcilePass, Workload


@dataclass(frozen=True)
class LocalState:
    """What the rule decided for one workload."""

    local: bool = False
    """The provider keeps its data on its host."""
    restrict_to: str | None = None
    """Place only on hosts with this state dir id (the pin holds)."""
    pin: StatePin | None = None
    """The pin in force (None: none yet, or the manifest moved it)."""
    gone: str | None = None
    """Why nothing is started while the host holding the data is away; None when it is here."""
    command: PinState | None = None
    """Record (or move) the pin: it runs on a host the store does not name yet."""


def has_local_state(w: Workload, observed: Observed, app: str) -> bool:
    if not w.is_provider or w.state == STATE_SHARED:
        return False
    if w.state == STATE_LOCAL or builtin_has_local_state(w.image):
        return True
    for host in observed.hosts.values():
        prov = host.providers.get(w.id)
        if prov is not None and prov.annotations.get(APP_ANNOTATION) == app and prov.local_state:
            return True
    return False


def pinnable(w: Workload) -> bool:
    """One copy on one host: the only shape that has one place for its data."""
    return w.is_provider and w.scaler == "spreadscaler" and w.instances == 1


def _allows(w: Workload, labels: Mapping[str, str]) -> bool:
    """Whether a spread that places this workload accepts a host with `labels`."""
    spreads = [s for s in w.effective_spreads if s.weight != 0] or list(w.effective_spreads)
    return any(all(labels.get(k) == v for k, v in s.requirements.items()) for s in spreads)


def local_state(w: Workload, observed: Observed, ctx: ReconcilePass) -> LocalState:
    """The local-state rule for `w` in `observed` (see the module doc)."""
    if not has_local_state(w, observed, ctx.app):
        return LocalState()
    if not pinnable(w):
        return LocalState(local=True)
    pin = observed.pins.get((ctx.app, w.id))
    holders = [h for h in observed.sorted_hosts if pin is not None and h.data_key == pin.state_id]
    if pin is not None:
        labels = holders[0].labels if holders else pin.labels
        if not _allows(w, labels):
            pin = None  # the manifest moved it: place as the spreads say, pin it where it lands
    running = [h for h in observed.sorted_hosts
               if (p := h.providers.get(w.id)) is not None and p.annotations.get(APP_ANNOTATION) == ctx.app]
    command: PinState | None = None
    if pin is None:
        if running:
            h = running[0]
            command = PinState(provider_id=w.id, state_id=h.data_key, host_id=h.id, host_name=h.name,
                               labels=h.labels, app=ctx.app, pass_id=ctx.pass_id,
                               reason=f"{w.name} keeps its data on {h.describe()}")
        return LocalState(local=True, command=command)
    here = [h for h in running if h.data_key == pin.state_id]
    if here and (here[0].id != pin.host_id or here[0].name != pin.host_name or here[0].labels != pin.labels):
        h = here[0]  # the same state dir under a new host id, name or labels: keep the record current
        command = PinState(provider_id=w.id, state_id=h.data_key, host_id=h.id, host_name=h.name,
                           labels=h.labels, app=ctx.app, pass_id=ctx.pass_id,
                           reason=f"{h.describe()} holds the data of {w.name}")
    gone = None
    if not holders:
        gone = (f"its data (local state) is on host {pin.describe()}, which is not in the lattice: "
                f"waiting for it to return instead of starting {w.name} with empty data elsewhere")
    return LocalState(local=True, restrict_to=pin.state_id, pin=pin, gone=gone, command=command)
