"""daemonscaler: run on every eligible host.

A component runs with ``max_instances = instances`` on every host that matches
one of its spreads (every host, with no spreads); a capability provider runs once
on each such host (``instances: 0`` runs nothing). A host matching several spreads
belongs to the first.
"""

from __future__ import annotations

from typing import Any

from ..observed import Observed
from .placement import Outcome, place
from .workload import ReconcilePass, Workload


def daemon_shares(w: Workload, want: int, usable: int) -> list[int]:
    if want <= 0:
        return []
    return [1 if w.is_provider else want] * usable


def plan_daemon(w: Workload, observed: Observed, ctx: ReconcilePass, **how: Any) -> Outcome:
    """`place` on every eligible host; `how`: `place`'s keyword options."""
    wants = [(s, w.instances) for s in w.effective_spreads]
    return place(w, wants, daemon_shares, observed, ctx, **how)
