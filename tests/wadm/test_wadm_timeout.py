"""``properties.timeout_ms``: a component's per-call deadline in manifests, validated, placed,
and rolled (a restart per host, one per pass) when it changes."""

from __future__ import annotations

import pytest

from tests.wadm.wadm_sim import CID, app, converge, host, lattice, manifest
from trellis.interfaces.annotations import TIMEOUT_ANNOTATION
from trellis.wadm.commands import StartComponent, StopComponent, UpdateComponent
from trellis.wadm.manifest import ManifestError, check_manifest, load_manifest
from trellis.wadm.observed import Observed
from trellis.wadm.scaler import AppState, reconcile, status, workload_of

IMAGE = "ghcr.io/acme/hello:1.0"


def with_timeout(value: str, *, version: str = "v1", kind: str = "component", image: str = IMAGE) -> str:
    props = f"        image: {image}\n"
    extra = f"        timeout_ms: {value}\n" if value else ""
    return app(2, version=version, kind=kind, image=image).replace(props, props + extra)


def timeouts(obs: Observed) -> dict[str, str | None]:
    return {h.id: h.components[CID].annotations.get(TIMEOUT_ANNOTATION)
            for h in obs.sorted_hosts if CID in h.components}


def test_timeout_is_read_and_started_with() -> None:
    m = load_manifest(with_timeout("600000"))
    assert m.components[0].properties.timeout_ms == 600_000
    w = workload_of(m, m.components[0])
    assert w is not None and w.timeout_ms == 600_000
    starts = [c for c in reconcile(m, lattice(host("a"))) if isinstance(c, StartComponent)]
    assert [c.timeout_ms for c in starts] == [600_000]
    assert "timeout 600000 ms" in str(starts[0])
    assert starts[0].annotations[TIMEOUT_ANNOTATION] == "600000"
    # without it: the host's default, no annotation, and the stored form as before
    plain = load_manifest(with_timeout(""))
    assert "timeout_ms" not in plain.to_data()["spec"]["components"][0]["properties"]
    start = next(c for c in reconcile(plain, lattice(host("a"))) if isinstance(c, StartComponent))
    assert start.timeout_ms is None and TIMEOUT_ANNOTATION not in start.annotations


@pytest.mark.parametrize(("value", "fragment"), [
    ("0", "properties.timeout_ms: must be 1 or more, got the number 0"),
    ("'30s'", "timeout_ms: expected a whole number, got the text '30s'"),
    ("1.5", "timeout_ms: expected a whole number, got the number 1.5"),
])
def test_bad_timeouts_are_errors_naming_component_and_key(value: str, fragment: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(with_timeout(value))
    messages = [str(p) for p in caught.value.errors]
    assert any(fragment in m and 'component "hello"' in m for m in messages), messages


def test_timeout_on_a_capability_provider_is_an_error() -> None:
    _, problems = check_manifest(with_timeout("5000", kind="capability", image="builtin:keyvalue-nats"))
    assert [str(p) for p in problems if p.is_error] == [
        'error: component "hello" > properties.timeout_ms: a call deadline applies to WebAssembly components '
        "(type: component), not to capability providers"]


def test_a_changed_timeout_restarts_each_placement_and_converges() -> None:
    obs, _ = converge(manifest(with_timeout("")), lattice(host("a"), host("b")))
    assert timeouts(obs) == {"a": None, "b": None}
    v2 = manifest(with_timeout("120000", version="v2"))
    assert status(v2, obs).state is AppState.RECONCILING
    first = reconcile(v2, obs)
    assert not any(isinstance(c, UpdateComponent) for c in first)  # the deadline is set when it starts
    assert any(isinstance(c, StopComponent | StartComponent) for c in first)
    final, history = converge(v2, obs)
    assert all(len([c for c in cmds if isinstance(c, StopComponent)]) <= 1 for cmds in history)
    assert timeouts(final) == {"a": "120000", "b": "120000"}
    assert status(v2, final).state is AppState.DEPLOYED and reconcile(v2, final) == []
