"""spreadscaler on plain data: weights, requirements, capacity ordering, resilience, host loss and return."""

from __future__ import annotations

import pytest

from tests.wadm.wadm_sim import (
    CID,
    ZONES,
    add_host,
    app,
    apply,
    converge,
    drop_host,
    host,
    lattice,
    manifest,
    placements,
    providers_on,
)
from trellis.wadm.commands import ScaleComponent, StartComponent, StartProvider, StopComponent
from trellis.wadm.manifest import Spread
from trellis.wadm.observed import (
    APP_ANNOTATION,
    APP_VERSION_ANNOTATION,
    SPREAD_ANNOTATION,
    HostCapacity,
    ObservedHost,
    RunningComponent,
)
from trellis.wadm.scaler import AppState, compute_spread, reconcile, status

# --- compute_spread: wadm's rounding ------------------------------------------------------


def spreads(*weights: int | None) -> list[Spread]:
    return [Spread(name=f"s{i}", weight=w) for i, w in enumerate(weights)]


@pytest.mark.parametrize(
    ("instances", "weights", "expected"),
    [
        (1, [100], [("s0", 1)]),
        (10, [100, 100], [("s0", 5), ("s1", 5)]),
        (7, [30, 40], [("s1", 4), ("s0", 3)]),
        (7, [100, 100], [("s0", 4), ("s1", 3)]),
        (10, [None, None], [("s0", 5), ("s1", 5)]),
        (103, [42, 3, 37, 384], [("s3", 85), ("s0", 10), ("s2", 8), ("s1", 0)]),
        (5, [40, 40, 20], [("s0", 2), ("s1", 2), ("s2", 1)]),
        (3, [0, 100], [("s1", 3), ("s0", 0)]),
    ],
)
def test_compute_spread_matches_wadm(instances: int, weights: list[int | None],
                                     expected: list[tuple[str, int]]) -> None:
    got = [(s.name, n) for s, n in compute_spread(instances, spreads(*weights))]
    assert got == expected
    assert sum(n for _, n in got) == instances


def test_no_spreads_is_one_default_spread() -> None:
    ((spread, n),) = compute_spread(12, [])
    assert (spread.name, spread.requirements, n) == ("default", {}, 12)


# --- placement -------------------------------------------------------------------------------


def test_weights_and_requirements_decide_where_instances_go() -> None:
    obs = lattice(host("e1", zone="east"), host("e2", zone="east"), host("w1", zone="west"), host("x", zone="moon"))
    final, _ = converge(manifest(app(10, ZONES)), obs)
    got = placements(final, CID)
    assert "x" not in got
    assert got["e1"] + got["e2"] == 8 and got["w1"] == 2
    comp = final.hosts["w1"].components[CID]
    assert comp.annotations[SPREAD_ANNOTATION] == "west"
    assert comp.annotations[APP_ANNOTATION] == "demo" and comp.annotations[APP_VERSION_ANNOTATION] == "v1"


def test_more_memory_then_lower_load_then_host_id_first() -> None:
    obs = lattice(host("a", mem=100), host("b", mem=500), host("c", mem=500, load=0.5), host("d", mem=500, load=0.5))
    cmds = reconcile(manifest(app(3)), obs)
    starts = [c for c in cmds if isinstance(c, StartComponent)]
    assert [(c.host_id, c.max_instances) for c in starts] == [("b", 2), ("c", 1)]


def test_single_instance_runs_on_one_host() -> None:
    final, _ = converge(manifest(app(1)), lattice(host("a"), host("b")))
    assert placements(final, CID) == {"a": 1}


def test_more_than_one_instance_uses_two_hosts_when_it_can() -> None:
    final, _ = converge(manifest(app(5)), lattice(host("a"), host("b"), host("c")))
    assert sorted(placements(final, CID).values()) == [2, 3]
    st = status(manifest(app(5)), final)
    assert st.state is AppState.DEPLOYED
    assert (st.components[0].desired, st.components[0].running) == (5, 5)


def test_one_eligible_host_takes_everything_and_says_so() -> None:
    final, _ = converge(manifest(app(5)), lattice(host("only")))
    assert placements(final, CID) == {"only": 5}
    st = status(manifest(app(5)), final)
    assert st.state is AppState.DEPLOYED
    assert "one eligible host" in st.components[0].message


def test_converged_lattice_gives_no_commands() -> None:
    m = manifest(app(10, ZONES))
    final, history = converge(m, lattice(host("e1", zone="east"), host("w1", zone="west"), host("w2", zone="west")))
    assert len(history) == 1
    assert reconcile(m, final) == []
    assert reconcile(m, final) == []  # still nothing: passes do not accumulate state


def test_no_eligible_host_fails_with_the_labels_it_wanted() -> None:
    m = manifest(app(2, "- name: eu\n  requirements: {zone: eu-1}"))
    obs = lattice(host("a", zone="us-1"))
    assert reconcile(m, obs) == []
    st = status(m, obs)
    assert st.state is AppState.FAILED
    assert st.components[0].state is AppState.FAILED
    assert "no eligible host for spread 'eu': no host has labels zone=eu-1" in st.components[0].message
    assert "no host has labels zone=eu-1" in st.message


def test_empty_lattice_fails_plainly() -> None:
    st = status(manifest(app(2)), lattice())
    assert st.state is AppState.FAILED and "no hosts in the lattice" in st.message


def test_scaling_down_shrinks_shares_and_hosts() -> None:
    final, _ = converge(manifest(app(6)), lattice(host("a"), host("b")))
    assert placements(final, CID) == {"a": 3, "b": 3}
    final, _ = converge(manifest(app(1)), final)
    assert placements(final, CID) == {"a": 1}
    final, _ = converge(manifest(app(0)), final)
    assert placements(final, CID) == {}


# --- host loss and return ----------------------------------------------------------------


def test_lost_host_share_is_replaced_on_others() -> None:
    m = manifest(app(5))
    final, _ = converge(m, lattice(host("a", mem=900), host("b", mem=800), host("c", mem=100)))
    assert placements(final, CID) == {"a": 3, "b": 2}
    after, _ = converge(m, drop_host(final, "a"))
    got = placements(after, CID)
    assert sum(got.values()) == 5 and set(got) == {"b", "c"}


def test_returning_host_with_its_old_placement_causes_no_duplicate() -> None:
    m = manifest(app(5))
    final, _ = converge(m, lattice(host("a", mem=900), host("b", mem=800), host("c", mem=100)))
    lost = final.hosts["a"]
    after, _ = converge(m, drop_host(final, "a"))
    back, history = converge(m, add_host(after, lost))  # a returns still running its old share
    got = placements(back, CID)
    assert sum(got.values()) == 5 and len(got) == 2
    assert any(isinstance(c, StopComponent) for c in history[0])
    assert reconcile(m, back) == []


def test_returning_empty_host_is_left_alone() -> None:
    m = manifest(app(5))
    final, _ = converge(m, lattice(host("a", mem=900), host("b", mem=800), host("c", mem=100)))
    after, _ = converge(m, drop_host(final, "a"))
    assert reconcile(m, add_host(after, host("a", mem=900))) == []


def test_extra_placements_stop_smallest_share_and_least_room_first() -> None:
    tags = {APP_ANNOTATION: "demo", APP_VERSION_ANNOTATION: "v1", SPREAD_ANNOTATION: "default", "trellis.config": ""}
    hosts = [
        ObservedHost(id="a", capacity=HostCapacity(memory_available_bytes=100),
                     components={CID: RunningComponent("ghcr.io/acme/hello:1.0", 2, tags)}),
        ObservedHost(id="b", capacity=HostCapacity(memory_available_bytes=900),
                     components={CID: RunningComponent("ghcr.io/acme/hello:1.0", 2, tags)}),
        ObservedHost(id="c", capacity=HostCapacity(memory_available_bytes=500),
                     components={CID: RunningComponent("ghcr.io/acme/hello:1.0", 1, tags)}),
    ]
    cmds = reconcile(manifest(app(4)), lattice(*hosts))
    assert [str(c.describe()) for c in cmds] == [f"stop component {CID} on c"]


# --- providers -------------------------------------------------------------------------------


def test_provider_instances_count_hosts_one_per_host() -> None:
    m = manifest(app(2, kind="capability", image="builtin:http-server"))
    final, history = converge(m, lattice(host("a", mem=10), host("b", mem=30), host("c", mem=20)))
    assert providers_on(final, CID) == ["b", "c"]
    assert all(isinstance(c, StartProvider) for c in history[0])


def test_provider_wanting_more_hosts_than_exist_fails_after_placing_what_it_can() -> None:
    m = manifest(app(3, kind="capability", image="builtin:http-server"))
    final, _ = converge(m, lattice(host("a"), host("b")))
    assert providers_on(final, CID) == ["a", "b"]
    st = status(m, final)
    assert st.state is AppState.FAILED
    assert "wants provider demo-hello on 3 host(s) but only 2" in st.components[0].message


def test_provider_without_scaler_runs_on_one_host() -> None:
    text = app(1, kind="capability", image="builtin:kv").replace(
        "      traits:\n        - type: spreadscaler\n          properties:\n            instances: 1\n", ""
    )
    final, _ = converge(manifest(text), lattice(host("a"), host("b")))
    assert len(providers_on(final, CID)) == 1


# --- foreign placements ------------------------------------------------------------------


def test_other_apps_and_unmanaged_placements_are_never_touched() -> None:
    other = {APP_ANNOTATION: "other", SPREAD_ANNOTATION: "default"}
    obs = lattice(
        ObservedHost(id="a", components={CID: RunningComponent("x:1", 7, other), "loose": RunningComponent("y:1", 1)}),
        ObservedHost(id="b", components={"other-thing": RunningComponent("z:1", 1, other)}),
        host("c"),
    )
    m = manifest(app(4))
    final, history = converge(m, obs)
    touched = {(c.host_id, getattr(c, "component_id", None)) for cmds in history for c in cmds if hasattr(c, "host_id")}
    assert ("a", CID) not in touched and ("a", "loose") not in touched and ("b", "other-thing") not in touched
    assert final.hosts["a"].components[CID].max_instances == 7  # the other app's, unchanged
    assert placements(final, CID, app="demo") == {"b": 2, "c": 2}


def test_placements_of_removed_components_are_stopped_only_if_ours() -> None:
    tags = {APP_ANNOTATION: "demo", SPREAD_ANNOTATION: "default"}
    obs = lattice(
        ObservedHost(id="a", components={"demo-gone": RunningComponent("g:1", 1, tags),
                                         "not-ours": RunningComponent("n:1", 1, {APP_ANNOTATION: "else"})}),
        host("b"),
    )
    m = manifest(app(1))
    final, _ = converge(m, obs)
    assert "demo-gone" not in final.hosts["a"].components
    assert "not-ours" in final.hosts["a"].components


def test_stopping_a_removed_component_waits_for_new_ones_to_start() -> None:
    tags = {APP_ANNOTATION: "demo", SPREAD_ANNOTATION: "default"}
    obs = lattice(ObservedHost(id="a", components={"demo-old": RunningComponent("g:1", 1, tags)}))
    first = reconcile(manifest(app(1)), obs)
    assert [type(c) for c in first] == [StartComponent]
    second = reconcile(manifest(app(1)), apply(obs, first))
    assert [c.describe() for c in second] == ["stop component demo-old on a"]


def test_spread_rename_retags_without_restarting() -> None:
    m1 = manifest(app(4, "- name: old\n  requirements: {}"))
    final, _ = converge(m1, lattice(host("a"), host("b")))
    m2 = manifest(app(4, "- name: new\n  requirements: {}"))
    cmds = reconcile(m2, final)
    assert cmds and all(isinstance(c, ScaleComponent) for c in cmds)
    final, _ = converge(m2, final)
    assert {h.components[CID].annotations[SPREAD_ANNOTATION] for h in final.hosts.values()} == {"new"}


def test_label_change_moves_placement_after_replacement_runs() -> None:
    m = manifest(app(1, "- name: gpu\n  requirements: {gpu: 'yes'}"))
    final, _ = converge(m, lattice(host("a", gpu="yes"), host("b")))
    assert placements(final, CID) == {"a": 1}
    relabelled = add_host(add_host(final, ObservedHost(id="a", components=final.hosts["a"].components)),
                          host("b", gpu="yes"))
    first = reconcile(m, relabelled)
    assert [c.describe() for c in first] == [f"start component {CID} (ghcr.io/acme/hello:1.0) on b with max 1"]
    final, _ = converge(m, apply(relabelled, first))
    assert placements(final, CID) == {"b": 1}


def test_with_equal_shares_the_extra_on_the_host_with_least_room_stops() -> None:
    tags = {APP_ANNOTATION: "demo", APP_VERSION_ANNOTATION: "v1", SPREAD_ANNOTATION: "default", "trellis.config": ""}
    hosts = [
        ObservedHost(id=h, capacity=HostCapacity(memory_available_bytes=mem, load_1m=load),
                     components={CID: RunningComponent("ghcr.io/acme/hello:1.0", 2, tags)})
        for h, mem, load in [("a", 500, 0.1), ("b", 500, 0.9), ("c", 800, 2.0)]
    ]
    cmds = reconcile(manifest(app(4)), lattice(*hosts))
    assert [c.describe() for c in cmds] == [f"stop component {CID} on b"]
