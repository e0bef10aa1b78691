"""The whole app: ``reconcile(app, observed) -> [Command]`` and ``status(app, observed)``.

Pure and level-triggered: every pass compares the manifest with the observed
lattice from scratch, so a pass that sees the lattice already as desired returns
no commands, and a lost event costs nothing but a pass.

Command order (apply in this order): config puts; component/provider starts,
scales and in-place updates; link deletes; link puts; stops; config deletes.

Components and providers of this app that the manifest no longer has are stopped
once nothing else in the app is starting or being replaced (so a renamed
component is running under its new id before the old one stops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..commands import Command, DeleteLink, StopComponent, StopProvider
from ..manifest import Manifest
from ..observed import APP_ANNOTATION, Observed
from .config import plan_configs
from .daemon import plan_daemon
from .link import desired_links, plan_links
from .local_state import LocalState, local_state
from .placement import Outcome
from .spread import plan_spread
from .workload import ReconcilePass, resolve_id, workload_of


class AppState(StrEnum):
    UNDEPLOYED = "undeployed"
    RECONCILING = "reconciling"
    DEPLOYED = "deployed"
    DEGRADED = "degraded"
    """Runs, but not as declared: a provider not healthy, a provider waiting for the host that holds its data."""
    FAILED = "failed"


@dataclass(frozen=True)
class PlacementProblem:
    """One placement that does not run as it should."""

    host_id: str | None
    host_name: str
    cause: str


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    id: str
    kind: str
    """``component`` or ``capability``."""
    scaler: str | None
    """``spreadscaler``, ``daemonscaler``, or None (not placed by this app)."""
    state: AppState
    desired: int
    """Components: total max_instances; providers: number of hosts."""
    running: int
    """The same, counting placements that run the desired image and config (providers: and are healthy)."""
    message: str = ""
    problems: tuple[PlacementProblem, ...] = ()
    local_state: bool = False
    data_host: str | None = None
    """Local state: the host id the data is pinned to."""


@dataclass(frozen=True)
class LinkStatus:
    source: str
    target: str
    description: str
    state: AppState
    message: str = ""


@dataclass(frozen=True)
class AppStatus:
    name: str
    version: str
    state: AppState
    message: str = ""
    components: tuple[ComponentStatus, ...] = ()
    links: tuple[LinkStatus, ...] = ()


@dataclass(frozen=True)
class AppPlan:
    commands: tuple[Command, ...]
    status: AppStatus


@dataclass
class _Parts:
    early: list[Command] = field(default_factory=list)
    late: list[Command] = field(default_factory=list)
    pins: list[Command] = field(default_factory=list)
    statuses: list[ComponentStatus] = field(default_factory=list)


def _component_status(o: Outcome, blocked: Sequence[str], ls: LocalState) -> ComponentStatus:
    w = o.workload
    failures = [*blocked, *o.failures]
    problems = tuple(PlacementProblem(h.id, h.name, cause) for h, cause in o.problems)
    if ls.gone is not None and ls.pin is not None:
        problems += (PlacementProblem(ls.pin.host_id, ls.pin.host_name, ls.gone),)
    extra: dict[str, Any] = {"problems": problems, "local_state": ls.local,
                             "data_host": ls.pin.host_id if ls.pin else None}
    if failures:
        state, message = AppState.FAILED, "; ".join(dict.fromkeys(failures))
    elif problems:
        state = AppState.DEGRADED
        message = "; ".join(dict.fromkeys(_describe(p, ls) for p in problems))
    elif o.starts or o.stops or o.pending or o.waiting or o.deferred or o.unready:
        state = AppState.RECONCILING
        parts = [f"{len(o.starts)} to start or change"] if o.starts else []
        if o.unready:
            parts.append(f"{o.unready} starting, not healthy yet")
        if o.deferred:
            parts.append(f"{o.deferred} to scale down once the new instances run")
        if o.stops:
            parts.append(f"{len(o.stops)} to stop")
        if o.waiting and not o.stops:
            parts.append(f"{o.waiting} old placement(s) waiting to be replaced")
        message = ", ".join(parts) or "waiting for placements to start"
    else:
        state, message = AppState.DEPLOYED, "; ".join(o.notes)
    return ComponentStatus(w.name, w.id, w.kind, w.scaler, state, o.desired, o.running, message, **extra)


def _describe(p: PlacementProblem, ls: LocalState) -> str:
    """``unhealthy on host NAME (ID): why`` (the cause is ``what: why``)."""
    if p.cause == ls.gone:
        return p.cause
    host = f"{p.host_name} ({p.host_id})" if p.host_name else str(p.host_id)
    what, _, why = p.cause.partition(": ")
    return f"{what} on host {host}" + (f": {why}" if why else "")


def _place_workloads(app: Manifest, observed: Observed, ctx: ReconcilePass, blocked: Mapping[str, str],
                     shared_apps: Mapping[str, Manifest] | None, avoid: Mapping[str, frozenset[str]],
                     now: float | None,
                     restarted: Mapping[str, frozenset[str]]) -> tuple[_Parts, bool, set[str], set[str]]:
    parts = _Parts()
    pending = False
    comp_ids: set[str] = set()
    prov_ids: set[str] = set()
    for comp in app.components:
        w = workload_of(app, comp)
        if w is None:
            parts.statuses.append(_unplaced_status(app, comp.name, observed, shared_apps))
            continue
        (prov_ids if w.is_provider else comp_ids).add(w.id)
        ls = local_state(w, observed, ctx)
        how = {"restrict_to": ls.restrict_to, "gone": ls.gone, "avoid": avoid.get(w.id, frozenset()), "now": now,
               "restarted": restarted.get(w.id, frozenset())}
        outcome = (plan_daemon(w, observed, ctx, **how) if w.scaler == "daemonscaler"
                   else plan_spread(w, observed, ctx, **how))
        if ls.command is not None:
            parts.pins.append(ls.command)
        waits = [blocked[c] for c in w.config if c in blocked]
        if waits:  # do not start anything that would miss its config; keep what runs
            outcome.starts.clear()
            outcome.stops.clear()
        pending = pending or outcome.pending
        parts.early += outcome.starts
        parts.late += outcome.stops
        parts.statuses.append(_component_status(outcome, waits, ls))
    return parts, pending, comp_ids, prov_ids


def _unplaced_status(app: Manifest, name: str, observed: Observed,
                     shared_apps: Mapping[str, Manifest] | None) -> ComponentStatus:
    comp = app.component(name)
    assert comp is not None
    cid = resolve_id(app, comp, shared_apps)
    if comp.shared is not None and comp.image is None:
        hosts = [h for h in observed.sorted_hosts
                 if cid in (h.providers if comp.is_capability else h.components)]
        if hosts:
            return ComponentStatus(name, cid, comp.kind, None, AppState.DEPLOYED, 0, 0,
                                   f"provided by application '{comp.shared.name}' on {len(hosts)} host(s)")
        return ComponentStatus(name, cid, comp.kind, None, AppState.FAILED, 0, 0,
                               f"shared component '{comp.shared.component}' of application "
                               f"'{comp.shared.name}' is not running")
    return ComponentStatus(name, cid, comp.kind, None, AppState.DEPLOYED, 0, 0,
                           "no spreadscaler or daemonscaler trait: not started")


def _orphans(app_name: str, observed: Observed, keep_components: set[str], keep_providers: set[str],
             ctx: ReconcilePass) -> list[Command]:
    out: list[Command] = []
    for host in observed.sorted_hosts:
        for cid, comp in sorted(host.components.items()):
            if comp.annotations.get(APP_ANNOTATION) == app_name and cid not in keep_components:
                out.append(StopComponent(host_id=host.id, component_id=cid, app=app_name,
                                         reason=f"{cid} is not in {ctx.version} of the manifest", pass_id=ctx.pass_id))
        for pid, prov in sorted(host.providers.items()):
            if prov.annotations.get(APP_ANNOTATION) == app_name and pid not in keep_providers:
                out.append(StopProvider(host_id=host.id, provider_id=pid, app=app_name,
                                        reason=f"{pid} is not in {ctx.version} of the manifest", pass_id=ctx.pass_id))
    return out


def plan(
    app: Manifest,
    observed: Observed,
    *,
    pass_id: str = "",
    shared_apps: Mapping[str, Manifest] | None = None,
    avoid: Mapping[str, frozenset[str]] | None = None,
    now: float | None = None,
    restarted: Mapping[str, frozenset[str]] | None = None,
) -> AppPlan:
    """Commands that move the lattice toward `app`, and the app's status as observed.

    `shared_apps` maps names of deployed shared applications to their manifests, to
    resolve ids of components used through ``properties.application``. `avoid` maps a
    component or provider id to hosts where starting it just failed: they are chosen
    last, so it is placed elsewhere when the spreads allow. `now` (the observer's clock)
    lets the scalers act on providers that stay unhealthy (restart, or place elsewhere);
    without it they only report them. `restarted` maps a provider id to hosts where the
    controller restarted it during its current trouble (a second time, it goes elsewhere).
    """
    ctx = ReconcilePass(app.name, app.version, pass_id)
    cfg = plan_configs(app, app.name, observed, ctx)
    parts, pending, comp_ids, prov_ids = _place_workloads(app, observed, ctx, cfg.blocked, shared_apps,
                                                          avoid or {}, now, restarted or {})
    orphans = _orphans(app.name, observed, comp_ids, prov_ids, ctx)
    links_wanted, link_notes = desired_links(app, ctx, shared_apps)
    links = plan_links(app.name, links_wanted, observed, cfg.blocked, ctx)

    commands: list[Command] = [*cfg.puts, *parts.early, *links.deletes, *links.puts, *parts.late]
    if not pending:
        commands += orphans
    commands += cfg.deletes
    commands += parts.pins

    link_statuses = tuple(
        LinkStatus(s.desired.source, s.desired.target, s.desired.describe(),
                   AppState.DEPLOYED if s.ok
                   else (AppState.RECONCILING if s.message == "putting link" else AppState.FAILED),
                   s.message)
        for s in links.states
    )
    comps = tuple(parts.statuses)
    failed = [f"{c.name}: {c.message}" for c in comps if c.state is AppState.FAILED]
    failed += [f"link {s.description}: {s.message}" for s in link_statuses if s.state is AppState.FAILED]
    degraded = [f"{c.name}: {c.message}" for c in comps if c.state is AppState.DEGRADED]
    if failed:
        state, message = AppState.FAILED, "; ".join(failed + degraded)
    elif degraded:
        state, message = AppState.DEGRADED, "; ".join(degraded)
    elif commands or orphans or any(c.state is AppState.RECONCILING for c in comps):
        state, message = AppState.RECONCILING, f"{len(commands)} command(s) this pass"
    else:
        state, message = AppState.DEPLOYED, "; ".join(link_notes)
    return AppPlan(tuple(commands), AppStatus(app.name, app.version, state, message, comps, link_statuses))


def reconcile(
    app: Manifest,
    observed: Observed,
    *,
    pass_id: str = "",
    shared_apps: Mapping[str, Manifest] | None = None,
    avoid: Mapping[str, frozenset[str]] | None = None,
    now: float | None = None,
    restarted: Mapping[str, frozenset[str]] | None = None,
) -> list[Command]:
    """The commands that move the lattice toward `app`; empty when it is there."""
    return list(plan(app, observed, pass_id=pass_id, shared_apps=shared_apps, avoid=avoid, now=now,
                     restarted=restarted).commands)


def status(
    app: Manifest,
    observed: Observed,
    *,
    shared_apps: Mapping[str, Manifest] | None = None,
) -> AppStatus:
    """How deployed app `app` stands in `observed`: deployed, reconciling, degraded or failed (with why)."""
    return plan(app, observed, shared_apps=shared_apps).status


def undeploy(app_name: str, observed: Observed, *, pass_id: str = "") -> list[Command]:
    """Commands that remove everything app `app_name` placed: placements, links, then configs."""
    ctx = ReconcilePass(app_name, "", pass_id)
    stops = [replace(c, reason=f"undeploy {app_name}") for c in _orphans(app_name, observed, set(), set(), ctx)]
    deletes = [
        DeleteLink(source_id=lk.source_id, target=lk.target, namespace=lk.namespace, package=lk.package,
                   name=lk.name, app=app_name, reason=f"undeploy {app_name}", pass_id=pass_id)
        for lk in sorted(observed.links, key=lambda lk: lk.identity)
        if lk.app == app_name
    ]
    cfg = plan_configs(None, app_name, observed, ctx)
    return [*deletes, *stops, *cfg.deletes]


def undeploy_status(app_name: str, observed: Observed) -> AppStatus:
    """``undeployed`` once nothing of `app_name` is left in the lattice, ``reconciling`` until then."""
    if not observed.managed_by(app_name):
        return AppStatus(app_name, "", AppState.UNDEPLOYED)
    left = len(undeploy(app_name, observed))
    return AppStatus(app_name, "", AppState.RECONCILING, f"undeploying: {left} thing(s) left to remove")
