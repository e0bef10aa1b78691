"""Scaler decisions on plain data: make before break, provider health, local state (issue 13)."""

from __future__ import annotations

from tests.wadm.wadm_sim import (
    CID,
    add_host,
    app,
    apply_one,
    converge,
    drop_host,
    host,
    lattice,
    manifest,
    placements,
    providers_on,
)
from trellis.wadm.commands import PinState, StartComponent, StartProvider, StopProvider
from trellis.wadm.observed import APP_ANNOTATION, HostCapacity, Observed, ObservedHost, RunningProvider, StatePin
from trellis.wadm.scaler import AppState, plan, reconcile, status

PID = CID  # the sim's one-component app names its provider the same way

# --- make before break ------------------------------------------------------------------


def _walk(m, obs: Observed, floor: int, max_passes: int = 10) -> Observed:
    """Converge command by command, checking after each that `floor` instances run."""
    for i in range(max_passes):
        cmds = reconcile(m, obs, pass_id=f"p{i}")
        if not cmds:
            return obs
        for cmd in cmds:
            obs = apply_one(obs, cmd)
            assert sum(placements(obs, CID).values()) >= floor, f"below {floor} after {cmd}"
    raise AssertionError("did not converge")


def test_a_joining_host_gets_its_share_before_the_old_host_gives_any_up() -> None:
    m = manifest(app(20))
    one, _ = converge(m, lattice(host("a")))
    assert placements(one, CID) == {"a": 20}
    joined = add_host(one, host("b", mem=2000))
    first = reconcile(m, joined)
    assert [type(c) for c in first] == [StartComponent]  # no scale-down in the same pass
    assert status(m, joined).state is AppState.RECONCILING
    after = _walk(m, joined, floor=20)
    assert placements(after, CID) == {"a": 10, "b": 10}


def test_scaling_providers_down_needs_no_start_first() -> None:
    m = manifest(app(3, kind="capability", image="builtin:http-server"))
    start, _ = converge(m, lattice(host("a"), host("b"), host("c")))
    assert len(providers_on(start, CID)) == 3
    smaller, _ = converge(manifest(app(1, kind="capability", image="builtin:http-server")), start)
    assert len(providers_on(smaller, CID)) == 1


# --- provider health -------------------------------------------------------------------------


def _provider_app() -> str:
    return app(1, kind="capability", image="builtin:http-server")


def _with_provider(obs: Observed, host_id: str, prov: RunningProvider) -> Observed:
    h = obs.hosts[host_id]
    new = ObservedHost(id=h.id, labels=h.labels, capacity=h.capacity, components=h.components,
                       providers={**h.providers, PID: prov}, name=h.name, state_id=h.state_id)
    return add_host(obs, new)


def test_an_unhealthy_provider_makes_the_app_degraded_naming_host_and_cause() -> None:
    m = manifest(_provider_app())
    ok, _ = converge(m, lattice(ObservedHost(id="NAAA", name="quiet-brook-00001")))
    assert status(m, ok).state is AppState.DEPLOYED
    running = ok.hosts["NAAA"].providers[PID]
    sick = _with_provider(ok, "NAAA", RunningProvider(running.image, running.annotations, "unhealthy",
                                                      "cannot listen on 127.0.0.1:8080: address already in use"))
    st = status(m, sick)
    assert st.state is AppState.DEGRADED
    comp = st.components[0]
    assert comp.state is AppState.DEGRADED and comp.running == 0 and comp.desired == 1
    assert "quiet-brook-00001 (NAAA)" in comp.message and "127.0.0.1:8080" in comp.message
    assert comp.problems[0].host_id == "NAAA" and "address already in use" in comp.problems[0].cause
    assert "hello" in st.message


def test_a_provider_starting_with_a_complaint_is_reported_at_once() -> None:
    m = manifest(_provider_app())
    ok, _ = converge(m, lattice(host("a")))
    running = ok.hosts["a"].providers[PID]
    starting = _with_provider(ok, "a", RunningProvider(running.image, running.annotations, "starting",
                                                       "cannot listen on 127.0.0.1:8080: in use"))
    assert status(m, starting).state is AppState.DEGRADED


def test_a_host_where_starting_failed_is_chosen_last() -> None:
    m = manifest(_provider_app())
    obs = lattice(host("a", mem=2000), host("b", mem=100))
    assert [c.host_id for c in reconcile(m, obs)] == ["a"]
    cmds = reconcile(m, obs, avoid={PID: frozenset({"a"})})
    assert [(type(c), c.host_id) for c in cmds] == [(StartProvider, "b")]


# --- local state -------------------------------------------------------------------------------


def _sqlite_app(extra_props: str = "", spread: str = "") -> str:
    text = app(1, kind="capability", image="builtin:sqldb-sqlite", spread=spread)
    if extra_props:
        text = text.replace("image: builtin:sqldb-sqlite", f"image: builtin:sqldb-sqlite\n        {extra_props}")
    return text


def _h(hid: str, state: str, mem: int = 1000, **labels: str) -> ObservedHost:
    return ObservedHost(id=hid, name=f"host-{hid}", state_id=state, labels=labels,
                        capacity=HostCapacity(memory_available_bytes=mem))


def test_a_local_state_provider_is_pinned_where_it_first_runs() -> None:
    m = manifest(_sqlite_app())
    final, history = converge(m, lattice(_h("a", "sa", mem=2000), _h("b", "sb")))
    assert providers_on(final, PID) == ["a"]
    pins = [c for cmds in history for c in cmds if isinstance(c, PinState)]
    assert [(p.state_id, p.host_id) for p in pins] == [("sa", "a")]
    assert final.pins[("demo", PID)] == StatePin("sa", "a", "host-a", {})
    st = status(m, final)
    assert st.state is AppState.DEPLOYED and st.components[0].local_state and st.components[0].data_host == "a"


def test_losing_the_host_with_the_data_starts_nothing_elsewhere_and_says_why() -> None:
    m = manifest(_sqlite_app())
    final, _ = converge(m, lattice(_h("a", "sa", mem=2000), _h("b", "sb")))
    lost = drop_host(final, "a")
    assert reconcile(m, lost) == []  # never an empty database on b
    st = status(m, lost)
    assert st.state is AppState.DEGRADED
    assert "host-a (a)" in st.message and "not in the lattice" in st.message
    assert st.components[0].problems[0].host_id == "a"


def test_the_data_host_returning_under_a_new_id_gets_the_provider_back() -> None:
    m = manifest(_sqlite_app())
    final, _ = converge(m, lattice(_h("a", "sa", mem=2000), _h("b", "sb")))
    back = add_host(drop_host(final, "a"), _h("a2", "sa", mem=10))  # restarted: new id, same state dir
    done, history = converge(m, back)
    assert providers_on(done, PID) == ["a2"]
    assert done.pins[("demo", PID)].host_id == "a2"
    assert status(m, done).state is AppState.DEPLOYED


def test_a_copy_running_elsewhere_stops_only_after_the_data_host_runs_it() -> None:
    m = manifest(_sqlite_app())
    obs = lattice(_h("a", "sa"), _h("b", "sb"))
    obs = Observed(hosts=obs.hosts, pins={("demo", PID): StatePin("sa", "a", "host-a")})
    tags = {APP_ANNOTATION: "demo", "trellis.app.version": "v1", "trellis.spread": "default", "trellis.config": ""}
    obs = _with_provider(obs, "b", RunningProvider("builtin:sqldb-sqlite", tags))
    first = reconcile(m, obs)
    assert [(type(c), c.host_id) for c in first] == [(StartProvider, "a")]
    done, _ = converge(m, obs)
    assert providers_on(done, PID) == ["a"]


def test_shared_state_moves_freely() -> None:
    m = manifest(_sqlite_app("state: shared"))
    final, history = converge(m, lattice(_h("a", "sa", mem=2000), _h("b", "sb")))
    assert not any(isinstance(c, PinState) for cmds in history for c in cmds)
    moved, _ = converge(m, drop_host(final, "a"))
    assert providers_on(moved, PID) == ["b"]


def test_a_declared_local_provider_is_pinned_too() -> None:
    text = app(1, kind="capability", image="python:my.cache")
    m = manifest(text)
    obs, _ = converge(m, lattice(_h("a", "sa", mem=2000), _h("b", "sb")))
    prov = obs.hosts["a"].providers[PID]
    declared = _with_provider(obs, "a", RunningProvider(prov.image, prov.annotations, local_state=True))
    cmds = reconcile(m, declared)
    assert [type(c) for c in cmds] == [PinState]
    m_local = manifest(text.replace("image: python:my.cache", "image: python:my.cache\n        state: local"))
    assert [type(c) for c in reconcile(m_local, obs)] == [PinState]


def test_the_manifest_can_move_the_data_elsewhere() -> None:
    spread = """
    - name: db
      requirements: {role: db}
    """
    m = manifest(_sqlite_app(spread=spread))
    obs = lattice(_h("a", "sa", role="old"), _h("b", "sb", role="db"))
    obs = Observed(hosts=obs.hosts, pins={("demo", PID): StatePin("sa", "a", "host-a", {"role": "old"})})
    done, history = converge(m, obs)
    assert providers_on(done, PID) == ["b"]
    assert done.pins[("demo", PID)].state_id == "sb"


def test_pin_commands_come_last_and_are_plain_data() -> None:
    m = manifest(_sqlite_app())
    obs, _ = converge(m, lattice(_h("a", "sa")))
    p = plan(m, drop_host(obs, "a"))
    assert p.commands == ()  # nothing scaled or stopped while it is away
    assert p.status.components[0].state is AppState.DEGRADED


def _sick_for(obs: Observed, host_id: str, since: float) -> Observed:
    running = obs.hosts[host_id].providers[PID]
    return _with_provider(obs, host_id, RunningProvider(running.image, running.annotations, "unhealthy",
                                                        "backend unreachable", problem_since=since))


def test_a_provider_unhealthy_for_long_is_restarted_then_placed_elsewhere() -> None:
    m = manifest(_provider_app())
    ok, _ = converge(m, lattice(host("a", mem=2000), host("b", mem=100)))
    assert providers_on(ok, PID) == ["a"]
    sick = _sick_for(ok, "a", since=100.0)
    assert reconcile(m, sick, now=105.0) == []  # not for long yet: reported, not acted on
    first = reconcile(m, sick, now=120.0)  # first time: restarted where it is
    assert [(type(c), c.host_id) for c in first] == [(StopProvider, "a")]
    assert first[0].reason.startswith("restart: unhealthy: backend unreachable")
    # restarted there already and sick again: started elsewhere first (make before break), then stopped
    again = reconcile(m, sick, now=120.0, restarted={PID: frozenset({"a"})})
    assert [(type(c), c.host_id) for c in again] == [(StartProvider, "b")]
    moved = apply_one(sick, again[0])
    second = reconcile(m, moved, now=121.0, restarted={PID: frozenset({"a"})})
    assert [(type(c), c.host_id) for c in second] == [(StopProvider, "a")]
    assert second[0].reason.startswith("placed on another host instead") and "backend unreachable" in second[0].reason


def test_a_provider_unhealthy_for_long_with_nowhere_else_to_go_is_restarted() -> None:
    m = manifest(_provider_app())
    ok, _ = converge(m, lattice(host("a")))
    sick = _sick_for(ok, "a", since=100.0)
    cmds = reconcile(m, sick, now=120.0, restarted={PID: frozenset({"a"})})  # even a second time
    assert [(type(c), c.host_id) for c in cmds] == [(StopProvider, "a")]
    assert cmds[0].reason.startswith("restart: unhealthy: backend unreachable")
    stopped = apply_one(sick, cmds[0])
    assert [(type(c), c.host_id) for c in reconcile(m, stopped, now=121.0)] == [(StartProvider, "a")]


def test_the_problem_keeps_the_time_it_began() -> None:
    first = RunningProvider("builtin:x", {}, "unhealthy", "down").since(None, 10.0)
    again = RunningProvider("builtin:x", {}, "unhealthy", "down").since(first, 20.0)
    healed = RunningProvider("builtin:x", {}).since(again, 30.0)
    assert (first.problem_since, again.problem_since, healed.problem_since) == (10.0, 10.0, None)


def test_a_provider_still_starting_is_not_yet_deployed() -> None:
    m = manifest(_provider_app())
    ok, _ = converge(m, lattice(host("a")))
    running = ok.hosts["a"].providers[PID]
    starting = _with_provider(ok, "a", RunningProvider(running.image, running.annotations, "starting", ""))
    st = status(m, starting)
    assert st.state is AppState.RECONCILING and st.components[0].running == 0
    assert "not healthy yet" in st.components[0].message
    early = _with_provider(ok, "a", RunningProvider(running.image, running.annotations, "starting",
                                                    "no health answer: TimeoutError", problem_since=10.0))
    assert plan(m, early, now=11.0).status.state is AppState.RECONCILING  # every start says so for a moment
    assert plan(m, early, now=14.0).status.state is AppState.DEGRADED
