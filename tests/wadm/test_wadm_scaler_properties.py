"""Properties of reconcile on generated lattices and apps.

For any cluster and any one-component app: repeated reconcile + apply converges
(the simulator never refuses a command), the result is what the placement rules
say, a converged lattice yields no commands, and the same holds after hosts go
away, come back (with what they ran) or join, and after the app changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wadm.wadm_sim import CID, add_host, app, apply, converge, drop_host, host, lattice, manifest
from trellis.wadm.manifest import Manifest
from trellis.wadm.observed import SPREAD_ANNOTATION, Observed, ObservedHost, RunningComponent, RunningProvider
from trellis.wadm.scaler import AppState, compute_spread, reconcile, status
from trellis.wadm.scaler.spread import SPREAD_HOSTS
from trellis.wadm.scaler.workload import workload_of

ZONES = ["a", "b", "c"]


@dataclass(frozen=True)
class Spec:
    kind: str
    scaler: str
    instances: int
    zones: tuple[str, ...]
    weights: tuple[int, ...]
    image: str = "ghcr.io/acme/hello:1.0"
    version: str = "v1"

    def manifest(self) -> Manifest:
        spread = "".join(
            f"- name: z{z}\n  requirements: {{zone: {z}}}\n  weight: {w}\n" for z,
                         w in zip(self.zones, self.weights, strict=True)
        )
        image = self.image if self.kind == "component" else "builtin:" + self.image.rsplit(":", 1)[-1].replace(".", "-")
        return manifest(app(self.instances, spread, image=image, version=self.version, kind=self.kind,
                            scaler=self.scaler))


hosts_st = st.lists(
    st.builds(lambda mem, load, zone: (mem * 100, load, zone),
              st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from(ZONES)),
    max_size=5,
).map(lambda specs: [host(f"h{i}", mem=m, load=ld, zone=z) for i, (m, ld, z) in enumerate(specs)])


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    zones = tuple(draw(st.lists(st.sampled_from(ZONES), unique=True, max_size=3)))
    return Spec(
        kind=draw(st.sampled_from(["component", "capability"])),
        scaler=draw(st.sampled_from(["spreadscaler", "daemonscaler"])),
        instances=draw(st.integers(0, 9)),
        zones=zones,
        weights=tuple(draw(st.integers(1, 100)) for _ in zones),
    )


def check_placement(spec: Spec, m: Manifest, obs: Observed) -> None:
    """The converged lattice is what the rules say (spreads here have disjoint host sets).

    Placements of the desired image must match the rules exactly. Others (an older
    image, or on hosts no spread covers) may remain only while the app has failed:
    old placements keep serving until the new ones can all be placed.
    """
    w = workload_of(m, m.components[0])
    assert w is not None
    failed = status(m, obs).state is AppState.FAILED

    def placed(h: ObservedHost) -> RunningComponent | RunningProvider | None:
        return h.providers.get(CID) if spec.kind == "capability" else h.components.get(CID)

    def running(h: ObservedHost) -> int:
        p = placed(h)
        if p is None or p.image != w.image:
            return 0
        return p.max_instances if isinstance(p, RunningComponent) else 1

    targets = compute_spread(w.instances, w.spreads) if spec.scaler == "spreadscaler" \
        else [(s, w.instances) for s in w.effective_spreads]
    covered: set[str] = set()
    for spread, want in targets:
        eligible = [h for h in obs.sorted_hosts if h.matches(spread.requirements)]
        covered |= {h.id for h in eligible}
        on = [h for h in eligible if running(h)]
        assert all(placed(h).annotations.get(SPREAD_ANNOTATION) == spread.name for h in on)
        if spec.scaler == "daemonscaler":
            assert [h.id for h in on] == ([h.id for h in eligible] if want > 0 else [])
            if spec.kind == "component":
                assert all(running(h) == want for h in on)
        elif spec.kind == "capability":
            assert len(on) == min(want, len(eligible))
        else:
            assert sum(running(h) for h in on) == (want if eligible else 0)
            assert len(on) == (min(want, SPREAD_HOSTS, len(eligible)) if eligible else 0)
    if not failed:
        assert all(placed(h) is None for h in obs.sorted_hosts if h.id not in covered)
        assert all(running(h) for h in obs.sorted_hosts if placed(h) is not None)


def settle(m: Manifest, obs: Observed, spec: Spec) -> Observed:
    final, _ = converge(m, obs, max_passes=25)
    assert reconcile(m, final) == []
    check_placement(spec, m, final)
    assert status(m, final).state in (AppState.DEPLOYED, AppState.FAILED)
    return final


props = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@props
@given(hosts_st, specs())
def test_converges_to_the_placement_rules(hosts: list[ObservedHost], spec: Spec) -> None:
    settle(spec.manifest(), lattice(*hosts), spec)


@props
@given(hosts_st, specs(), st.data())
def test_reconverges_after_hosts_leave_return_and_join(hosts: list[ObservedHost], spec: Spec,
                                                       data: st.DataObject) -> None:
    m = spec.manifest()
    obs = settle(m, lattice(*hosts), spec)
    gone: list[ObservedHost] = []
    for step in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["drop", "return", "join"]))
        if action == "drop" and obs.hosts:
            hid = data.draw(st.sampled_from(sorted(obs.hosts)))
            gone.append(obs.hosts[hid])
            obs = drop_host(obs, hid)
        elif action == "return" and gone:
            obs = add_host(obs, gone.pop())  # comes back still running what it ran
        else:
            obs = add_host(obs, host(f"new{step}", mem=data.draw(st.integers(0, 3)) * 100,
                                     zone=data.draw(st.sampled_from(ZONES))))
        obs = settle(m, obs, spec)


@props
@given(hosts_st, specs(), specs())
def test_reconverges_after_the_app_changes(hosts: list[ObservedHost], first: Spec, second: Spec) -> None:
    obs = settle(first.manifest(), lattice(*hosts), first)
    # same component id; everything else may change, including the image and version
    changed = Spec(first.kind, second.scaler, second.instances, second.zones, second.weights,
                   image="ghcr.io/acme/hello:2.0", version="v2")
    settle(changed.manifest(), obs, changed)


@props
@given(hosts_st, specs())
def test_image_rollover_never_drops_capacity(hosts: list[ObservedHost], spec: Spec) -> None:
    """Make-before-break: while a new image rolls out, old + new capacity never falls below what ran."""
    if spec.kind != "component":
        return
    obs = settle(spec.manifest(), lattice(*hosts), spec)

    def total(o: Observed) -> int:
        return sum(h.components[CID].max_instances for h in o.hosts.values() if CID in h.components)

    before = total(obs)
    new = Spec(spec.kind, spec.scaler, spec.instances, spec.zones, spec.weights, image="ghcr.io/acme/hello:2.0",
               version="v2")
    m = new.manifest()
    for i in range(25):
        cmds = reconcile(m, obs, pass_id=f"r{i}")
        if not cmds:
            break
        obs = apply(obs, cmds)
        assert total(obs) >= before
    else:
        raise AssertionError("rollover did not converge")
    check_placement(new, m, obs)
