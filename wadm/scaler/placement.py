"""Placing one workload on hosts, given how many instances each spread wants.

Shared by the spreadscaler (`spread.py`) and the daemonscaler (`daemon.py`), which
differ only in how a spread's wish becomes per-host shares (a ``SharesFn``).

Rules, in order (all deterministic):

1. **Whose placements.** On each host the workload's id is either free, ours
   (annotation ``trellis.app`` is this app), or foreign (anything else: never
   touched, and that host is not used for this workload).
2. **Claiming.** Our placement belongs to the spread named in its
   ``trellis.spread`` annotation if its host still matches that spread; otherwise
   to the first spread (in order) whose requirements its host matches (so renaming
   a spread restarts nothing); otherwise it is *left over*.
3. **Fresh or stale.** A placement is fresh if it runs the desired image with the
   desired config names and (for a component whose host reports it) the desired
   instance reuse, stale otherwise (a new version changed them).
4. **Choosing hosts** for a spread that wants shares ``[s1 ≥ s2 ≥ …]``: fresh
   holders first (largest current share, then the ranking below), then free hosts
   by capacity ranking, then stale holders (to be replaced in place). The capacity
   ranking is: most memory available, then lowest 1-minute load, then host id.
   Fresh holders beyond the shares are *extra* and are stopped: the ones with the
   smallest share and least room go first. So a host that comes back with its old
   placement never duplicates work.
5. **Commands.** Free chosen hosts get a start; fresh ones a scale when their share
   or annotations differ. Replacing a stale placement is *disruptive*, so it waits
   until nothing else for this workload is starting or scaling up, and happens on
   one host per pass: an image or reuse change is an in-place update; a config
   change (and any provider change) is a stop, after which the freed host gets a start.
6. **Make before break.** A scale-down of a fresh holder (its share shrank because
   a host joined) and the stop of an extra one wait until nothing else for this
   workload is starting or scaling up: the new instances run (compiled and ready:
   the executor waits for their outcome) before old ones go, so a rebalance never
   leaves fewer instances than declared.
7. **Retiring.** Stale placements that are not needed and left-over ones are
   stopped only once the workload has converged (nothing starting, scaling up or
   being replaced) and has no failure: old placements keep serving until new ones
   are running, and stay if the new ones cannot be placed.
8. **Health.** A provider counts as running only while its host reports it healthy;
   one that is not (unhealthy, restarting, failed, or starting with a complaint) is
   a *problem* naming the host and its cause. Given `now`, a provider with a problem
   for `SICK_AFTER_S` is acted on: it is restarted in place (stopped; the next pass
   starts it again); if it was restarted there already (`restarted`: hosts where the
   controller did) a free eligible host is chosen before it, so it is placed
   elsewhere (make before break) if the spreads allow, else restarted again. Hosts
   in `avoid` (where starting this workload just failed) are chosen last, so it is
   placed elsewhere if the spreads allow.
9. **Local state.** With `restrict_to` (see `local_state.py`) only hosts with that
   state dir id are eligible; when none is in the lattice, nothing is started and
   the workload is *degraded* with reason `gone`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..commands import (
    Command,
    ScaleComponent,
    StartComponent,
    StartProvider,
    StopComponent,
    StopProvider,
    UpdateComponent,
)
from ..manifest import Spread
from ..observed import (
    APP_ANNOTATION,
    APP_VERSION_ANNOTATION,
    CONFIG_ANNOTATION,
    SECRETS_ANNOTATION,
    SPREAD_ANNOTATION,
    TIMEOUT_ANNOTATION,
    FrozenMap,
    Observed,
    ObservedHost,
    Reuse,
)
from .workload import ReconcilePass, Workload

SharesFn = Callable[[Workload, int, int], list[int]]
"""(workload, what the spread wants, number of usable hosts) → one share per host to use, largest first."""


@dataclass(frozen=True)
class Slot:
    """One placement of the workload on a host."""

    host: ObservedHost
    count: int
    image: str
    annotations: Mapping[str, str]
    reuse: Reuse | None = None
    """A component's instance reuse as its host reports it (None: not reported)."""

    @property
    def spread(self) -> str | None:
        return self.annotations.get(SPREAD_ANNOTATION)

    @property
    def config(self) -> tuple[str, ...] | None:
        raw = self.annotations.get(CONFIG_ANNOTATION)
        if raw is None:
            return None
        return tuple(x for x in raw.split(",") if x)


@dataclass
class Outcome:
    """What placing one workload decided, and how it stands."""

    workload: Workload
    starts: list[Command] = field(default_factory=list)
    """Starts, scales and in-place replacements."""
    stops: list[Command] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    desired: int = 0
    running: int = 0
    pending: bool = False
    """Something is starting, scaling up or being replaced: the workload has not converged."""
    waiting: int = 0
    """Stale or left-over placements still running, to be retired once converged."""
    unready: int = 0
    """Providers on their way (starting, nothing wrong said yet): not running yet, not a problem."""
    deferred: int = 0
    """Scale-downs and stops held back until the new instances run (make before break)."""
    degraded: list[str] = field(default_factory=list)
    """Why it runs, but not as declared (e.g. waiting for the host that holds its data)."""
    problems: list[tuple[ObservedHost, str]] = field(default_factory=list)
    """Placements that do not run as they should: (host, cause)."""


def capacity_key(host: ObservedHost) -> tuple[int, float, str]:
    return (-host.capacity.memory_available_bytes, host.capacity.load_1m, host.id)


def secrets_tag(w: Workload) -> str:
    """The secrets a part is granted, as its annotation says them (references, never values)."""
    return ",".join(f"{s.name}={s.key}" + (f"#{s.field}" if s.field else "") + (f"@{s.version}" if s.version else "")
                    for s in w.secrets)


def timeout_tag(w: Workload) -> str:
    """A component's ``properties.timeout_ms`` as its annotation says it ("" when the manifest sets none)."""
    return "" if w.timeout_ms is None else str(w.timeout_ms)


def desired_annotations(ctx: ReconcilePass, w: Workload, spread: str) -> FrozenMap[str, str]:
    tags = {
        APP_ANNOTATION: ctx.app,
        APP_VERSION_ANNOTATION: ctx.version,
        SPREAD_ANNOTATION: spread,
        CONFIG_ANNOTATION: ",".join(w.config),
    }
    if w.secrets:
        tags[SECRETS_ANNOTATION] = secrets_tag(w)
    if w.timeout_ms is not None:
        tags[TIMEOUT_ANNOTATION] = timeout_tag(w)
    return FrozenMap(tags)


def _same_tags(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def slots_of(w: Workload, observed: Observed, app: str) -> tuple[dict[str, Slot], set[str]]:
    """Our placements of `w` by host id, and the ids of hosts where someone else runs `w.id`."""
    ours: dict[str, Slot] = {}
    foreign: set[str] = set()
    for host in observed.sorted_hosts:
        entry: tuple[str, int, Mapping[str, str], Reuse | None] | None
        if w.is_provider:
            prov = host.providers.get(w.id)
            entry = (prov.image, 1, prov.annotations, None) if prov is not None else None
        else:
            comp = host.components.get(w.id)
            entry = (comp.image, comp.max_instances, comp.annotations, comp.reuse) if comp is not None else None
        if entry is None:
            continue
        image, count, annotations, reuse = entry
        if annotations.get(APP_ANNOTATION) == app:
            ours[host.id] = Slot(host, count, image, annotations, reuse)
        else:
            foreign.add(host.id)
    return ours, foreign


def is_fresh(w: Workload, slot: Slot) -> bool:
    config = slot.config
    return (
        slot.image == w.image
        and (config is None or config == w.config)
        and (slot.reuse is None or slot.reuse == w.reuse)
        and slot.annotations.get(SECRETS_ANNOTATION, "") == secrets_tag(w)  # a grant changes with a restart
        and slot.annotations.get(TIMEOUT_ANNOTATION, "") == timeout_tag(w)  # so does the deadline
    )


def _claim(spreads: Sequence[Spread], ours: Mapping[str, Slot]) -> tuple[dict[str, dict[str, Slot]], dict[str, Slot]]:
    claimed: dict[str, dict[str, Slot]] = {s.name: {} for s in spreads}
    by_name = {s.name: s for s in spreads}
    rest: dict[str, Slot] = {}
    for host_id, slot in ours.items():
        spread = by_name.get(slot.spread or "")
        if spread is not None and slot.host.matches(spread.requirements):
            claimed[spread.name][host_id] = slot
        else:
            rest[host_id] = slot
    leftovers: dict[str, Slot] = {}
    for host_id, slot in rest.items():
        for spread in spreads:
            if slot.host.matches(spread.requirements):
                claimed[spread.name][host_id] = slot
                break
        else:
            leftovers[host_id] = slot
    return claimed, leftovers


def _no_host_message(w: Workload, spread: Spread, eligible: list[ObservedHost], observed: Observed) -> str:
    if not observed.hosts:
        return "no eligible host: there are no hosts in the lattice"
    if not eligible:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(spread.requirements.items()))
        return f"no eligible host for spread '{spread.name}': no host has labels {labels}"
    ids = ", ".join(h.id for h in eligible)
    return f"no eligible host for spread '{spread.name}': {w.id} already runs on {ids} for another application"


SICK_AFTER_S = 15.0
"""A provider with a problem (unhealthy, restarting, failed, starting with a complaint) for this long is
acted on: restarted in place (stopped; the next pass starts it again), and, if that did not help, started
on another eligible free host first (the sick one stops once it runs) or, with none, restarted again."""


STARTING_GRACE_S = 3.0
"""A provider still starting is reported for what its health answers say only after this long (every
provider answers "not started" for a moment); given no clock, at once."""


def _problem(w: Workload, slot: Slot, now: float | None) -> str | None:
    prov = slot.host.providers.get(w.id) if w.is_provider else None
    problem = prov.problem() if prov is not None else None
    if (problem is not None and prov is not None and prov.status == "starting" and now is not None
            and prov.problem_since is not None and now - prov.problem_since < STARTING_GRACE_S):
        return None
    return problem


RESTART_REASON = "restart: "
"""How the reason of a stop that restarts an unhealthy provider begins (the executor remembers those)."""


def _sick_for_long(w: Workload, slot: Slot, now: float | None) -> bool:
    if not w.is_provider or now is None:
        return False
    prov = slot.host.providers.get(w.id)
    return (prov is not None and prov.problem_since is not None and prov.problem() is not None
            and now - prov.problem_since >= SICK_AFTER_S)


def _restart_reason(w: Workload, slot: Slot, now: float | None) -> str:
    prov = slot.host.providers.get(w.id)
    since = prov.problem_since if prov is not None else None
    took = f" for {now - since:.0f}s" if now is not None and since is not None else ""
    return f"{RESTART_REASON}{prov.problem() if prov else 'not healthy'}{took} on {slot.host.describe()}"


def _healthy(w: Workload, slot: Slot) -> bool:
    if not w.is_provider:
        return True
    prov = slot.host.providers.get(w.id)
    return prov is None or prov.healthy


def place(
    w: Workload,
    wants: Sequence[tuple[Spread, int]],
    shares_fn: SharesFn,
    observed: Observed,
    ctx: ReconcilePass,
    *,
    restrict_to: str | None = None,
    gone: str | None = None,
    avoid: frozenset[str] = frozenset(),
    now: float | None = None,
    restarted: frozenset[str] = frozenset(),
) -> Outcome:
    """Plan `w` given what each spread wants (see the module doc for the rules)."""
    out = Outcome(w)
    ours, foreign = slots_of(w, observed, ctx.app)
    if restrict_to is not None:  # a slot on a host without the data belongs to no spread
        allowed = {h.id for h in observed.sorted_hosts if h.data_key == restrict_to}
        leftover_first = {hid: slot for hid, slot in ours.items() if hid not in allowed}
        ours = {hid: slot for hid, slot in ours.items() if hid in allowed}
    else:
        allowed = None
        leftover_first = {}
    claimed, leftovers = _claim([s for s, _ in wants], ours)
    leftovers.update(leftover_first)
    used: set[str] = set(ours)  # a host runs one placement of an id
    replace: list[tuple[Slot, str]] = []  # stale chosen holders, with their spread
    retire: list[Slot] = list(leftovers.values())
    scale_ups = 0
    restarts: list[Command] = []  # providers unhealthy for long with nowhere else to go: stopped, started again
    downs: list[Command] = []  # scale-downs and extra stops: only once nothing is starting (make before break)

    for spread, want in wants:
        mine = claimed[spread.name]
        eligible = [h for h in observed.sorted_hosts if h.matches(spread.requirements)
                    and (allowed is None or h.id in allowed)]
        free = sorted(
            (h for h in eligible if h.id not in foreign and h.id not in used),
            key=lambda h: (h.id in avoid, *capacity_key(h)),
        )
        fresh = sorted(
            (s for s in mine.values() if is_fresh(w, s)),
            key=lambda s: (not _healthy(w, s), -s.count, *capacity_key(s.host)),
        )
        stale = sorted((s for s in mine.values() if not is_fresh(w, s)), key=lambda s: capacity_key(s.host))
        usable = len(fresh) + len(free) + len(stale)
        shares = shares_fn(w, want, usable)
        out.desired += sum(shares) if w.scaler == "daemonscaler" else want
        out.running += sum(s.count for s in fresh if _healthy(w, s))
        for slot in fresh:
            problem = _problem(w, slot, now)
            if problem is not None:
                out.problems.append((slot.host, problem))
            elif not _healthy(w, slot):
                out.unready += 1  # starting (or stopping), nothing wrong said yet: on its way
        if want > 0 and usable == 0 and gone is not None:
            out.degraded.append(gone)
        elif want > 0 and usable == 0:
            out.failures.append(_no_host_message(w, spread, eligible, observed))
        elif len(shares) < want and w.is_provider and w.scaler == "spreadscaler":
            out.failures.append(
                f"spread '{spread.name}' wants provider {w.id} on {want} host(s) but only {usable} eligible host(s) "
                "can run it"
            )
        elif w.scaler == "spreadscaler" and not w.is_provider and want > 1 and usable == 1:
            out.notes.append(f"spread '{spread.name}' has one eligible host: losing it stops {w.name}")

        tags = desired_annotations(ctx, w, spread.name)
        sick = [s for s in fresh if _sick_for_long(w, s, now)]
        again = [s for s in sick if s.host.id in restarted]  # restarted there already: elsewhere if it can be
        n = len(shares)
        keep = [s for s in fresh if s not in again][:n]  # a first restart happens in place
        chosen_free = free[: n - len(keep)]
        chosen_again = again[: n - len(keep) - len(chosen_free)]  # nowhere else to go: restarted again
        chosen_fresh = keep + chosen_again
        chosen_stale = stale[: n - len(chosen_fresh) - len(chosen_free)]
        for slot in chosen_fresh:
            if slot in sick:
                restarts.append(_stop(w, slot.host.id, ctx, _restart_reason(w, slot, now)))
        extra = [s for s in fresh if s not in chosen_fresh]
        share_iter = iter(shares)
        for slot in chosen_fresh:
            share = next(share_iter)
            if w.is_provider:
                continue  # providers have no instance count; their tags are set at start
            if slot.count != share or not _same_tags(slot.annotations, tags):
                scale_ups += share > slot.count
                why = (
                    f"spread '{spread.name}' gives {slot.host.id} {share} of {want} (has {slot.count})"
                    if slot.count != share
                    else f"retag as {ctx.app} {ctx.version}, spread '{spread.name}'"
                )
                cmd = ScaleComponent(host_id=slot.host.id, component_id=w.id, max_instances=share,
                                     annotations=tags, app=ctx.app, reason=why, pass_id=ctx.pass_id)
                (downs if share < slot.count else out.starts).append(cmd)
        for host in chosen_free:
            share = next(share_iter)
            used.add(host.id)
            why = f"spread '{spread.name}' places {share} of {want} on {host.id}"
            out.starts.append(_start(w, host.id, share, tags, ctx, why))
        for slot in chosen_stale:
            replace.append((slot, spread.name))
        for slot in extra:
            why = ("placed on another host instead: " + _restart_reason(w, slot, now)[len(RESTART_REASON):]
                   if slot in sick
                   else f"extra: spread '{spread.name}' wants {want}, on {len(shares)} host(s)")
            downs.append(_stop(w, slot.host.id, ctx, why))
        retire.extend(stale[len(chosen_stale):])

    surging = scale_ups > 0 or any(isinstance(c, StartComponent | StartProvider) for c in out.starts)
    if surging and downs:
        out.deferred = len(downs)  # the new instances first; the next pass, once they run, scales these down
    else:
        out.starts.extend(c for c in downs if isinstance(c, ScaleComponent))
        out.stops.extend(c for c in downs if not isinstance(c, ScaleComponent))
    out.stops.extend(restarts)
    if replace and not surging:
        slot, spread_name = replace[0]  # one disruptive replacement per pass
        out.starts.append(_replace(w, slot, ctx, spread_name))
    out.pending = surging or bool(replace) or bool(restarts)
    out.waiting += len(replace) + len(retire)
    if not out.pending and not out.failures and not out.degraded:
        for slot in retire:
            out.stops.append(_stop(w, slot.host.id, ctx, _retire_reason(w, slot, ctx)))
    return out


def _start(w: Workload, host_id: str, share: int, tags: FrozenMap[str, str], ctx: ReconcilePass, why: str) -> Command:
    if w.is_provider:
        return StartProvider(host_id=host_id, provider_id=w.id, image=w.image, config=w.config,
                             annotations=tags, secrets=w.secrets, app=ctx.app, reason=why, pass_id=ctx.pass_id)
    return StartComponent(host_id=host_id, component_id=w.id, image=w.image, max_instances=share,
                          annotations=tags, config=w.config, reuse=w.reuse, secrets=w.secrets, app=ctx.app,
                          timeout_ms=w.timeout_ms, reason=why, pass_id=ctx.pass_id)


def _stop(w: Workload, host_id: str, ctx: ReconcilePass, why: str) -> Command:
    if w.is_provider:
        return StopProvider(host_id=host_id, provider_id=w.id, app=ctx.app, reason=why, pass_id=ctx.pass_id)
    return StopComponent(host_id=host_id, component_id=w.id, app=ctx.app, reason=why, pass_id=ctx.pass_id)


def _replace(w: Workload, slot: Slot, ctx: ReconcilePass, spread: str) -> Command:
    if not w.is_provider and (slot.config is None or slot.config == w.config) \
            and slot.annotations.get(SECRETS_ANNOTATION, "") == secrets_tag(w) \
            and slot.annotations.get(TIMEOUT_ANNOTATION, "") == timeout_tag(w):  # in place keeps the old grant, limits
        # a host that reports reuse understands a new one; to one that does not, send only the image
        reuse = w.reuse if slot.reuse is not None else None
        changes = [f"{slot.image} -> {w.image}"] if slot.image != w.image else []
        if slot.reuse is not None and slot.reuse != w.reuse:
            changes.append(f"{slot.reuse.describe()} -> {w.reuse.describe()}")
        return UpdateComponent(host_id=slot.host.id, component_id=w.id, image=w.image, reuse=reuse, app=ctx.app,
                               reason=f"roll {'; '.join(changes)} in place (spread '{spread}')",
                               pass_id=ctx.pass_id)
    return _stop(w, slot.host.id, ctx, f"roll over to {ctx.version}: replace on {slot.host.id} (spread '{spread}')")


def _retire_reason(w: Workload, slot: Slot, ctx: ReconcilePass) -> str:
    if is_fresh(w, slot):
        return f"left over: {slot.host.id} matches no spread of {w.name}"
    old = slot.annotations.get(APP_VERSION_ANNOTATION, "an older version")
    return f"retire {old} placement now that {ctx.version} is running"
