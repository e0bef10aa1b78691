"""New versions roll over make-before-break, driven by observed state; daemonscaler basics."""

from __future__ import annotations

from tests.wadm.wadm_sim import (
    CID,
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
from trellis.wadm.commands import (
    ScaleComponent,
    StartComponent,
    StartProvider,
    StopComponent,
    StopProvider,
    UpdateComponent,
)
from trellis.wadm.observed import APP_VERSION_ANNOTATION, Observed
from trellis.wadm.scaler import AppState, reconcile, status

V1 = "ghcr.io/acme/hello:1.0"
V2 = "ghcr.io/acme/hello:2.0"


def capacity(obs: Observed) -> int:
    return sum(placements(obs, CID).values())


def images(obs: Observed) -> dict[str, str]:
    return {h.id: h.components[CID].image for h in obs.sorted_hosts if CID in h.components}


def test_new_image_starts_on_a_free_host_before_anything_old_stops() -> None:
    final, _ = converge(manifest(app(4)), lattice(host("a"), host("b"), host("c", mem=10)))
    assert images(final) == {"a": V1, "b": V1}
    m2 = manifest(app(4, image=V2, version="v2"))

    phase1 = reconcile(m2, final)
    assert [type(c) for c in phase1] == [StartComponent]
    assert phase1[0].host_id == "c" and phase1[0].image == V2
    assert status(m2, final).state is AppState.RECONCILING

    obs = apply(final, phase1)
    states = [obs]
    for _ in range(10):
        cmds = reconcile(m2, obs)
        if not cmds:
            break
        assert not any(isinstance(c, StopComponent) and images(obs).get(c.host_id) == V2 for c in cmds)
        obs = apply(obs, cmds)
        states.append(obs)
    assert all(capacity(s) >= 4 for s in states), [placements(s, CID) for s in states]
    assert set(images(obs).values()) == {V2} and capacity(obs) == 4
    versions = {h.components[CID].annotations[APP_VERSION_ANNOTATION]
                for h in obs.hosts.values() if CID in h.components}
    assert versions == {"v2"}
    assert status(m2, obs).state is AppState.DEPLOYED


def test_without_free_hosts_images_are_updated_in_place_one_host_per_pass() -> None:
    final, _ = converge(manifest(app(4)), lattice(host("a"), host("b")))
    m2 = manifest(app(4, image=V2, version="v2"))
    final2, history = converge(m2, final)
    updates = [[c for c in cmds if isinstance(c, UpdateComponent)] for cmds in history]
    assert all(len(u) <= 1 for u in updates)
    assert sum(len(u) for u in updates) == 2
    assert not any(isinstance(c, StopComponent | StartComponent) for cmds in history for c in cmds)
    assert images(final2) == {"a": V2, "b": V2}


def test_config_change_is_rolled_by_stop_and_start_one_host_at_a_time() -> None:
    extra = "      # config\n"
    cfg = "        config:\n          - name: tuning\n            properties: {level: '1'}\n"
    m1 = manifest(app(4).replace("        image: " + V1 + "\n", "        image: " + V1 + "\n" + cfg) + extra)
    final, _ = converge(m1, lattice(host("a"), host("b")))
    m2 = manifest(app(4, version="v2").replace("        image: " + V1 + "\n",
                                               "        image: " + V1 + "\n" + cfg.replace("tuning", "tuning2")))
    obs, history = final, []
    for _ in range(12):
        cmds = reconcile(m2, obs)
        if not cmds:
            break
        history.append(cmds)
        stops = [c for c in cmds if isinstance(c, StopComponent)]
        assert len(stops) <= 1
        obs = apply(obs, cmds)
        assert capacity(obs) >= 2  # never more than one host down
    assert {h.components[CID].annotations["trellis.config"] for h in obs.hosts.values()} == {"demo-tuning2"}
    # the old config is deleted once nothing uses it
    assert "demo-tuning" not in obs.configs and "demo-tuning2" in obs.configs


def test_version_bump_with_same_image_only_retags() -> None:
    final, _ = converge(manifest(app(4)), lattice(host("a"), host("b")))
    cmds = reconcile(manifest(app(4, version="v2")), final)
    assert cmds and all(isinstance(c, ScaleComponent) for c in cmds)
    assert all(c.annotations[APP_VERSION_ANNOTATION] == "v2" for c in cmds if isinstance(c, ScaleComponent))


def test_old_version_keeps_running_when_new_one_cannot_be_placed() -> None:
    final, _ = converge(manifest(app(2)), lattice(host("a"), host("b")))
    m2 = manifest(app(2, "- name: eu\n  requirements: {zone: eu}", image=V2, version="v2"))
    assert reconcile(m2, final) == []
    st = status(m2, final)
    assert st.state is AppState.FAILED and "zone=eu" in st.message
    assert placements(final, CID) == {"a": 1, "b": 1}


def test_host_returning_with_old_version_after_rollover_is_retired() -> None:
    final, _ = converge(manifest(app(4)), lattice(host("a"), host("b"), host("c")))
    gone = final.hosts["a"]
    m2 = manifest(app(4, image=V2, version="v2"))
    rolled, _ = converge(m2, drop_host(final, "a"))
    back, _ = converge(m2, add_host(rolled, gone))
    assert set(images(back).values()) == {V2} and capacity(back) == 4


def test_provider_rollover_starts_new_before_stopping_old() -> None:
    m1 = manifest(app(1, kind="capability", image="builtin:kv"))
    final, _ = converge(m1, lattice(host("a"), host("b", mem=10)))
    m2 = manifest(app(1, kind="capability", image="builtin:kv2", version="v2"))
    first = reconcile(m2, final)
    assert [type(c) for c in first] == [StartProvider] and first[0].host_id == "b"
    second = reconcile(m2, apply(final, first))
    assert [type(c) for c in second] == [StopProvider] and second[0].host_id == "a"


# --- daemonscaler ------------------------------------------------------------------------


def test_daemonscaler_runs_instances_on_every_eligible_host() -> None:
    m = manifest(app(3, "- name: edge\n  requirements: {role: edge}", scaler="daemonscaler"))
    final, _ = converge(m, lattice(host("a", role="edge"), host("b", role="edge"), host("c", role="core")))
    assert placements(final, CID) == {"a": 3, "b": 3}
    st = status(m, final)
    assert (st.components[0].desired, st.components[0].running) == (6, 6)
    joined, history = converge(m, add_host(final, host("d", role="edge")))
    assert placements(joined, CID) == {"a": 3, "b": 3, "d": 3}
    assert [type(c) for cmds in history for c in cmds] == [StartComponent]
    assert reconcile(m, drop_host(joined, "a")) == []


def test_daemonscaler_without_spreads_covers_all_hosts_and_zero_stops() -> None:
    m = manifest(app(1, scaler="daemonscaler"))
    final, _ = converge(m, lattice(host("a"), host("b"), host("c")))
    assert placements(final, CID) == {"a": 1, "b": 1, "c": 1}
    final, _ = converge(manifest(app(0, scaler="daemonscaler")), final)
    assert placements(final, CID) == {}


def test_daemonscaler_provider_runs_once_per_eligible_host() -> None:
    m = manifest(app(5, "- name: gpu\n  requirements: {gpu: 'yes'}", kind="capability",
                     image="builtin:ml", scaler="daemonscaler"))
    final, _ = converge(m, lattice(host("a", gpu="yes"), host("b"), host("c", gpu="yes")))
    assert providers_on(final, CID) == ["a", "c"]


def test_daemonscaler_image_change_rolls_one_host_per_pass() -> None:
    m1 = manifest(app(2, scaler="daemonscaler"))
    final, _ = converge(m1, lattice(host("a"), host("b"), host("c")))
    _, history = converge(manifest(app(2, image=V2, version="v2", scaler="daemonscaler")), final)
    per_pass = [sum(isinstance(c, UpdateComponent) for c in cmds) for cmds in history]
    assert max(per_pass) == 1 and sum(per_pass) == 3


def test_daemonscaler_with_no_eligible_host_fails() -> None:
    m = manifest(app(1, "- name: gpu\n  requirements: {gpu: 'yes'}", scaler="daemonscaler"))
    st = status(m, lattice(host("a")))
    assert st.state is AppState.FAILED and "gpu=yes" in st.components[0].message
