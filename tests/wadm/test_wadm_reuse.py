"""``properties.reuse``: instance reuse in manifests, validated, placed, and rolled when it changes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

import pytest

from tests.wadm.wadm_sim import CID, app, apply_one, host, lattice, manifest
from trellis.wadm.commands import Command, ScaleComponent, StartComponent, StopComponent, UpdateComponent
from trellis.wadm.manifest import Manifest, ManifestError, check_manifest, load_manifest
from trellis.wadm.observed import HostCapacity, Observed, ObservedHost, Reuse, RunningComponent
from trellis.wadm.scaler import AppState, reconcile, status, workload_of

IMAGE = "ghcr.io/acme/hello:1.0"


def with_reuse(reuse: str, *, version: str = "v1", instances: int = 4, kind: str = "component",
               image: str = IMAGE, config: str = "") -> str:
    """The one-component demo app with ``reuse:`` (YAML, flow style) under its properties."""
    props = f"        image: {image}\n"
    extra = f"        reuse: {reuse}\n" if reuse else ""
    return app(instances, version=version, kind=kind, image=image).replace(props, props + extra + config)


# --- the manifest ---------------------------------------------------------------------------


def test_reuse_is_read_with_the_cli_spelling() -> None:
    m = load_manifest(with_reuse("{max_invocations: 10000, max_idle_s: 30}"))
    reuse = m.components[0].properties.reuse
    assert reuse is not None and (reuse.max_invocations, reuse.max_idle_s) == (10000, 30.0)
    w = workload_of(m, m.components[0])
    assert w is not None and w.reuse == Reuse(10000, 30.0)

    block = textwrap.indent("reuse:\n  max_invocations: 5\n", " " * 8)
    m2 = load_manifest(app(2).replace(f"        image: {IMAGE}\n", f"        image: {IMAGE}\n{block}"))
    w2 = workload_of(m2, m2.components[0])
    assert w2 is not None and w2.reuse == Reuse(5, None)


def test_without_reuse_every_call_gets_a_fresh_instance_and_the_manifest_is_unchanged() -> None:
    m = load_manifest(app(2))
    assert m.components[0].properties.reuse is None
    w = workload_of(m, m.components[0])
    assert w is not None and w.reuse == Reuse() and w.reuse.is_default
    assert Reuse() == Reuse(max_invocations=1, max_idle_s=None)
    # stored form and generated version are what they were before reuse existed
    assert "reuse" not in m.to_data()["spec"]["components"][0]["properties"]
    # an empty mapping is the default too
    empty = load_manifest(with_reuse("{}"))
    w_empty = workload_of(empty, empty.components[0])
    assert w_empty is not None and w_empty.reuse == Reuse()


@pytest.mark.parametrize(
    ("reuse", "fragment"),
    [
        ("{max_invocations: 0}", "properties.reuse.max_invocations: must be 1 or more, got the number 0"),
        ("{max_invocations: -5}", "properties.reuse.max_invocations: must be 1 or more, got the number -5"),
        ("{max_invocations: '10'}",
         "max_invocations: expected a whole number, got the text '10' (write it without quotes)"),
        ("{max_invocations: 2.5}", "max_invocations: expected a whole number, got the number 2.5"),
        ("{max_invocations: true}", "max_invocations: expected a whole number, got the boolean true"),
        ("{max_invocations: 3, max_idle_s: -1}", "properties.reuse.max_idle_s: must be 0 or more, got the number -1"),
        ("{max_invocations: 3, max_idle_s: '30'}",
         "max_idle_s: expected a number, got the text '30' (write it without quotes)"),
        ("{max_invocations: 3, max_idle_s: .inf}", "max_idle_s: expected a finite number"),
        ("{max_invocations: 3, idle_s: 30}", "properties.reuse: unknown key 'idle_s' (did you mean 'max_idle_s'?)"),
        ("10000", "properties.reuse: expected a mapping such as {max_invocations: 10000}, got the number 10000"),
        ("[10]", "properties.reuse: expected a mapping, got a list"),
    ],
)
def test_bad_reuse_values_are_errors_naming_component_and_key(reuse: str, fragment: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(with_reuse(reuse))
    messages = [str(p) for p in caught.value.errors]
    assert any(fragment in m and 'component "hello"' in m for m in messages), messages


def test_reuse_on_a_capability_provider_is_an_error() -> None:
    _, problems = check_manifest(with_reuse("{max_invocations: 3}", kind="capability", image="builtin:keyvalue-nats"))
    assert [str(p) for p in problems if p.is_error] == [
        'error: component "hello" > properties.reuse: instance reuse applies to WebAssembly components '
        "(type: component), not to capability providers"
    ]


def test_reuse_on_a_shared_component_is_an_error() -> None:
    text = app(2).replace(f"        image: {IMAGE}\n",
                          "        application: {name: base, component: hello}\n        reuse: {max_invocations: 3}\n")
    spread = "      traits:\n        - type: spreadscaler\n          properties:\n            instances: 2\n"
    text = text.replace(spread, "")
    _, problems = check_manifest(text)
    errors = [str(p) for p in problems if p.is_error]
    assert errors == ["error: component \"hello\": shared component 'base' cannot specify 'reuse': "
                      "application 'base' sets it"], errors


def test_an_idle_limit_without_reuse_is_a_warning() -> None:
    m, problems = check_manifest(with_reuse("{max_idle_s: 30}"))
    assert m is not None
    assert [str(p) for p in problems] == [
        'warning: component "hello" > properties.reuse: max_idle_s has no effect while max_invocations is 1 '
        "(every call gets a fresh instance)"
    ]


# --- placing and rolling -------------------------------------------------------------------------


def run(obs: Observed, commands: Iterable[Command]) -> Observed:
    """Apply commands as a host would, reuse included (what a host reports after each)."""
    for cmd in commands:
        before = None
        if isinstance(cmd, UpdateComponent | ScaleComponent):
            before = obs.hosts[cmd.host_id].components.get(cmd.component_id)
        obs = apply_one(obs, cmd)
        if isinstance(cmd, StartComponent | UpdateComponent | ScaleComponent):
            reuse: Reuse | None
            if isinstance(cmd, StartComponent) or isinstance(cmd, UpdateComponent) and cmd.reuse is not None:
                reuse = cmd.reuse
            else:
                assert before is not None
                reuse = before.reuse
            h = obs.hosts[cmd.host_id]
            have = h.components[cmd.component_id]
            comps = {**h.components,
                     cmd.component_id: RunningComponent(have.image, have.max_instances, have.annotations, reuse)}
            new = ObservedHost(id=h.id, labels=h.labels, capacity=h.capacity, components=comps,
                               providers=h.providers)
            obs = Observed(hosts={**obs.hosts, h.id: new}, links=obs.links, configs=obs.configs)
    return obs


def converge(m: Manifest, obs: Observed, max_passes: int = 20) -> tuple[Observed, list[list[Command]]]:
    history: list[list[Command]] = []
    for i in range(max_passes):
        cmds = reconcile(m, obs, pass_id=f"p{i}")
        if not cmds:
            return obs, history
        history.append(cmds)
        obs = run(obs, cmds)
    raise AssertionError(f"did not converge; last: {[str(c) for c in history[-1]]}")


def reuse_on(obs: Observed) -> dict[str, Reuse | None]:
    return {h.id: h.components[CID].reuse for h in obs.sorted_hosts if CID in h.components}


def test_starts_carry_the_manifest_reuse_and_the_default_otherwise() -> None:
    cmds = reconcile(manifest(with_reuse("{max_invocations: 100, max_idle_s: 5}")), lattice(host("a"), host("b")))
    starts = [c for c in cmds if isinstance(c, StartComponent)]
    assert len(starts) == 2 and {c.reuse for c in starts} == {Reuse(100, 5.0)}
    assert "reuse up to 100 calls per instance, idle 5s" in str(starts[0])

    plain = [c for c in reconcile(manifest(app(4)), lattice(host("a"))) if isinstance(c, StartComponent)]
    assert [c.reuse for c in plain] == [Reuse()]


def test_a_new_version_that_changes_only_reuse_updates_in_place_one_host_per_pass() -> None:
    v1 = manifest(with_reuse(""))
    obs, _ = converge(v1, lattice(host("a"), host("b")))
    assert reuse_on(obs) == {"a": Reuse(), "b": Reuse()}

    v2 = manifest(with_reuse("{max_invocations: 1000, max_idle_s: 30}", version="v2"))
    assert status(v2, obs).state is AppState.RECONCILING  # the running placements are stale
    first = reconcile(v2, obs)
    assert [type(c) for c in first] == [UpdateComponent]
    assert first[0].image == IMAGE and first[0].reuse == Reuse(1000, 30.0)
    assert "a fresh instance per call -> reuse up to 1000 calls per instance, idle 30s" in first[0].reason

    final, history = converge(v2, obs)
    updates = [[c for c in cmds if isinstance(c, UpdateComponent)] for cmds in history]
    assert all(len(u) <= 1 for u in updates) and sum(len(u) for u in updates) == 2
    # in place: nothing stopped or started, only updated (and re-tagged as v2)
    assert all(isinstance(c, UpdateComponent | ScaleComponent) for cmds in history for c in cmds)
    assert reuse_on(final) == {"a": Reuse(1000, 30.0), "b": Reuse(1000, 30.0)}
    assert status(v2, final).state is AppState.DEPLOYED
    assert reconcile(v2, final) == []

    # and back: dropping reuse from the manifest returns to a fresh instance per call
    v3 = manifest(with_reuse("", version="v3"))
    back, _ = converge(v3, final)
    assert reuse_on(back) == {"a": Reuse(), "b": Reuse()}


def test_drift_on_a_host_is_repaired_even_without_a_new_version() -> None:
    m = manifest(with_reuse("{max_invocations: 50}"))
    obs, _ = converge(m, lattice(host("a")))
    drifted = run(obs, [UpdateComponent(host_id="a", component_id=CID, image=IMAGE, reuse=Reuse(), app="demo")])
    assert reuse_on(drifted) == {"a": Reuse()}
    cmds = reconcile(m, drifted)
    assert [(type(c), c.reuse) for c in cmds] == [(UpdateComponent, Reuse(50))]


def test_a_host_that_does_not_report_reuse_is_left_alone() -> None:
    """Hosts from before reuse reporting: their placements are not restarted over and over."""
    m = manifest(with_reuse("{max_invocations: 50}"))
    old = RunningComponent(IMAGE, 4, {"trellis.app": "demo", "trellis.app.version": "v1",
                                      "trellis.spread": "default", "trellis.config": ""})
    assert old.reuse is None
    obs = lattice(ObservedHost(id="a", capacity=HostCapacity(memory_available_bytes=1000), components={CID: old}))
    assert reconcile(m, obs) == []
    # an image change to such a host sends only the image (it would refuse an unknown field)
    m2 = manifest(with_reuse("{max_invocations: 50}", version="v2", image="ghcr.io/acme/hello:2.0"))
    cmds = reconcile(m2, obs)
    assert [type(c) for c in cmds] == [UpdateComponent] and cmds[0].reuse is None


def test_an_image_change_keeps_the_reuse() -> None:
    m = manifest(with_reuse("{max_invocations: 7}"))
    obs, _ = converge(m, lattice(host("a")))
    m2 = manifest(with_reuse("{max_invocations: 7}", version="v2", image="ghcr.io/acme/hello:2.0"))
    final, history = converge(m2, obs)
    assert [type(c) for c in history[0]] == [UpdateComponent]
    assert history[0][0].reuse == Reuse(7)
    assert all(isinstance(c, ScaleComponent) for cmds in history[1:] for c in cmds)  # re-tagged as v2
    assert reuse_on(final) == {"a": Reuse(7)}


def test_reuse_and_config_changed_together_restart_with_the_new_reuse() -> None:
    cfg = "        config:\n          - name: tuning\n            properties: {level: '1'}\n"
    m = manifest(with_reuse("", config=cfg))
    obs, _ = converge(m, lattice(host("a")))
    cfg2 = cfg.replace("'1'", "'2'").replace("tuning", "tuning2")
    m2 = manifest(with_reuse("{max_invocations: 9}", version="v2", config=cfg2))
    final, history = converge(m2, obs)
    flat = [c for cmds in history for c in cmds]
    assert any(isinstance(c, StopComponent) for c in flat)
    assert [c.reuse for c in flat if isinstance(c, StartComponent)] == [Reuse(9)]
    assert reuse_on(final) == {"a": Reuse(9)}


def test_a_version_bump_with_the_same_reuse_only_retags() -> None:
    m = manifest(with_reuse("{max_invocations: 7, max_idle_s: 2}"))
    obs, _ = converge(m, lattice(host("a"), host("b")))
    cmds = reconcile(manifest(with_reuse("{max_invocations: 7, max_idle_s: 2.0}", version="v2")), obs)
    assert cmds and all(isinstance(c, ScaleComponent) for c in cmds)


def test_running_component_reads_reuse_from_plain_data() -> None:
    rc = RunningComponent("x", 1, {}, {"max_invocations": 3, "max_idle_s": 4, "max_warm": 9})  # type: ignore[arg-type]  # the point: a mapping with a key more
    assert rc.reuse == Reuse(3, 4.0)
    assert Reuse(3, 4) == Reuse(3, 4.0) and hash(Reuse(3, 4)) == hash(Reuse(3, 4.0))
