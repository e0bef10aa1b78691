"""wadm's own manifests are accepted or rejected exactly as wadm does, with errors that name the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.wadm.manifest import (
    ManifestError,
    check_manifest,
    check_shared_components,
    load_manifest,
    parse_manifest,
    validate,
    validation_report,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "wadm"
ABSENT = f"wadm conformance corpus not found at {CORPUS}"


def files(sub: str) -> list[object]:
    folder = CORPUS / sub
    found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if folder.is_dir() else []
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT), id=f"{sub}-absent")]
    return [pytest.param(p, id=p.name) for p in found]


# What each invalid manifest must be rejected for: every fragment must appear in one error.
INVALID_BECAUSE: dict[str, list[str]] = {
    "dangling-link.wadm.yaml": ['"httpclient"', "missing"],
    "duplicate_link_config_names.wadm.yaml": ["duplicate link config name", "alternate-port"],
    "incorrect_component.yaml": ["duplicate component name", '"ui"'],
    "duplicate_component.yaml": ["duplicate component name", '"vets"'],
    "duplicate_id1.yaml": ["duplicate component identifier", "httpserver"],
    "duplicate_id2.yaml": ["duplicate component identifier", "'ui'"],
    "missing_capability_component.yaml": ['"httpclyent"', "missing", "did you mean 'httpclient'"],
    "duplicate_links.yaml": ["duplicate link found inside component", "httpserver", "incoming-handler"],
    "incorrect_unique_interface_links.yaml": ["duplicate link", "atomics"],
    "made-up-key.wadm.yaml": ["unknown key 'incorrect'", "http-component"],
}

# Valid manifests that wadm accepts with warnings, and a fragment each warning must contain.
WARNS_WITH: dict[str, list[str]] = {
    "misnamed-interface.wadm.yaml": ["[wasi:keyvalue/atomic]"],
    "unknown-package.wadm.yaml": ["[wasi:keyvalues/atomics]"],
    "deprecated-source-and-target-config.yaml": ["'target_config' is deprecated", "'source_config' is deprecated"],
}


@pytest.mark.parametrize("path", files("valid"))
def test_valid_manifest_is_accepted(path: Path) -> None:
    manifest = load_manifest(path)
    problems = validate(manifest)
    assert not [p for p in problems if p.is_error], problems
    for fragment in WARNS_WITH.get(path.name, []):
        assert any(fragment in p.message and not p.is_error for p in problems), (fragment, problems)
    ok, text = validation_report(path)
    assert ok, text
    assert manifest.name in text


def test_deprecated_keys_give_exactly_two_deprecation_warnings() -> None:
    path = CORPUS / "valid" / "deprecated-source-and-target-config.yaml"
    if not path.exists():
        pytest.skip(ABSENT)
    deprecations = [p for p in validate(load_manifest(path)) if "deprecated" in p.message]
    assert len(deprecations) == 2


@pytest.mark.parametrize("path", files("invalid"))
def test_invalid_manifest_is_rejected_naming_the_fault(path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    errors = caught.value.errors
    assert errors, "rejected without an error"
    expected = INVALID_BECAUSE.get(path.name)
    if expected is not None:
        texts = [str(e).lower() for e in errors]
        assert any(all(f.lower() in t for f in expected) for t in texts), (expected, texts)
    ok, text = validation_report(path)
    assert not ok
    assert "error:" in text


def test_every_invalid_file_has_an_expectation() -> None:
    folder = CORPUS / "invalid"
    if not folder.is_dir():
        pytest.skip(ABSENT)
    assert {p.name for p in folder.iterdir() if p.suffix in (".yaml", ".json")} <= set(INVALID_BECAUSE)


@pytest.mark.parametrize("path", files("shared-apps"))
def test_shared_app_manifest_parses(path: Path) -> None:
    manifest = parse_manifest(path)
    problems = validate(manifest)
    if path.name in ("both_properties.yaml", "no_properties.yaml"):
        assert any("'image'" in p.message and p.is_error for p in problems)
    else:
        assert not [p for p in problems if p.is_error], problems


@pytest.mark.parametrize(
    ("app", "deployed", "fragment"),
    [
        ("shared_http_dev.yaml", ["shared_http.yaml"], None),
        ("shared_component_dev.yaml", ["shared_component.yaml"], None),
        ("notshared_http_dev.yaml", ["notshared_http.yaml"], "is not shared"),
        ("no_matching_app.yaml", ["shared_http.yaml"], "is not deployed"),
        ("no_matching_component.yaml", ["shared_http.yaml"], "has no component 'some-nonexistant-component'"),
    ],
)
def test_shared_components_must_be_deployed_and_shared(app: str, deployed: list[str], fragment: str | None) -> None:
    folder = CORPUS / "shared-apps"
    if not folder.is_dir():
        pytest.skip(ABSENT)
    manifest = load_manifest(folder / app)
    problems = check_shared_components(manifest, [load_manifest(folder / d) for d in deployed])
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p.message for p in problems), problems


def test_check_manifest_never_raises_for_corpus() -> None:
    if not CORPUS.is_dir():
        pytest.skip(ABSENT)
    for path in sorted(CORPUS.rglob("*.y*ml")):
        manifest, problems = check_manifest(path)
        assert manifest is not None or problems


@pytest.mark.parametrize("path", files("valid"))
def test_manifest_round_trips_through_plain_data(path: Path) -> None:
    from trellis.wadm.manifest import manifest_from_data

    manifest = load_manifest(path)
    again = manifest_from_data(manifest.to_data())
    assert again.to_data() == manifest.to_data()
    assert again.digest() == manifest.digest()


def test_a_manifests_digest_is_computed_once_and_again_for_a_changed_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unversioned manifest's `version` is its digest; the controller asks for it several times per
    pass, so it is computed once per (frozen) manifest; a copy with changes has its own."""
    from trellis.wadm.manifest import models

    text = """apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: digest-once}
spec:
  components:
    - name: hello
      type: component
      properties: {image: file:///tmp/hello.wasm}
      traits: [{type: spreadscaler, properties: {instances: 1}}]
"""
    manifest = parse_manifest(text)
    dumps = 0
    real = models.Manifest.to_data

    def counting(self: models.Manifest) -> dict[str, object]:
        nonlocal dumps
        dumps += 1
        return real(self)

    monkeypatch.setattr(models.Manifest, "to_data", counting)
    first = manifest.version
    assert first == "auto-" + manifest.digest()[:12] and manifest.version == first
    assert dumps == 1
    assert parse_manifest(text) == manifest  # the cached digest is not part of equality
    renamed = manifest.model_copy(update={"metadata": manifest.metadata.model_copy(update={"name": "other"})})
    assert renamed.digest() != manifest.digest() and dumps == 2
    assert renamed.digest() == parse_manifest(text.replace("digest-once", "other")).digest()
