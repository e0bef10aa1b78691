"""Scalers: pure functions of (desired manifest, observed lattice) → commands.

No I/O here: an executor applies the commands and an observer builds `Observed`.
"""

from .daemon import daemon_shares, plan_daemon
from .plan import (
    AppPlan,
    AppState,
    AppStatus,
    ComponentStatus,
    LinkStatus,
    PlacementProblem,
    plan,
    reconcile,
    status,
    undeploy,
    undeploy_status,
)
from .spread import SPREAD_HOSTS, compute_spread, plan_spread, spread_shares
from .workload import ReconcilePass, Workload, resolve_id, workload_of

__all__ = [
    "SPREAD_HOSTS",
    "AppState",
    "AppStatus",
    "ComponentStatus",
    "ReconcilePass",
    "LinkStatus",
    "AppPlan",
    "PlacementProblem",
    "Workload",
    "compute_spread",
    "daemon_shares",
    "plan",
    "plan_daemon",
    "plan_spread",
    "reconcile",
    "resolve_id",
    "spread_shares",
    "status",
    "undeploy",
    "undeploy_status",
    "workload_of",
]
