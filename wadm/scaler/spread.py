"""spreadscaler: a fixed number of instances divided across spreads by weight.

Division follows wadm exactly (``compute_spread``): spreads are ordered by weight,
heaviest first (ties keep manifest order); each gets ``instances * weight //
total_weight``; what rounding leaves over is handed out one each, in that order.
No spreads means one spread, ``default``, over every host.

Within a spread:

* a **component**'s share is total concurrent capacity (``max_instances``). It runs
  on one host when its share is 1 or only one host is eligible, and otherwise on
  two hosts (`SPREAD_HOSTS`) so that losing a host does not take it down; the
  share is split evenly, the larger half on the first host;
* a **capability provider**'s share is a number of hosts, one provider per host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..manifest import DEFAULT_SPREAD_NAME, Spread
from ..observed import Observed
from .placement import Outcome, place
from .workload import ReconcilePass, Workload

SPREAD_HOSTS = 2
"""How many hosts a spread of a component with more than one instance is kept on."""


def compute_spread(instances: int, spreads: Sequence[Spread]) -> list[tuple[Spread, int]]:
    """Each spread with its number of instances, heaviest first (wadm's rounding)."""
    if not spreads:
        return [(Spread(name=DEFAULT_SPREAD_NAME), instances)]
    ordered = sorted(spreads, key=lambda s: -s.effective_weight)  # stable: ties keep order
    total = sum(s.effective_weight for s in ordered)
    if total == 0:
        return [(s, 0) for s in ordered]  # validate() rejects this when instances > 0
    counts = [instances * s.effective_weight // total for s in ordered]
    left = instances - sum(counts)
    for i in range(len(counts)):
        if left <= 0:
            break
        counts[i] += 1
        left -= 1
    return list(zip(ordered, counts, strict=True))


def spread_shares(w: Workload, want: int, usable: int) -> list[int]:
    """Per-host shares for one spread: see the module doc."""
    if want <= 0 or usable <= 0:
        return []
    if w.is_provider:
        return [1] * min(want, usable)
    hosts = min(want, SPREAD_HOSTS, usable)
    base, extra = divmod(want, hosts)
    return [base + 1] * extra + [base] * (hosts - extra)


def plan_spread(w: Workload, observed: Observed, ctx: ReconcilePass, **how: Any) -> Outcome:
    """`place` with the spreadscaler's shares; `how`: `place`'s keyword options."""
    return place(w, compute_spread(w.instances, w.spreads), spread_shares, observed, ctx, **how)
