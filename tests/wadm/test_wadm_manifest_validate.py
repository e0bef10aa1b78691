"""Manifest parsing and validation on small hand-written manifests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from trellis.wadm.manifest import (
    ImageKind,
    InvalidProperties,
    ManifestError,
    Problem,
    check_manifest,
    load_manifest,
    parse_image,
    parse_manifest,
    validate,
    validation_report,
)

BASE = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: demo
  annotations:
    version: v1
spec:
  components:
"""


def app(components: str, base: str = BASE) -> str:
    return base + textwrap.indent(textwrap.dedent(components).strip("\n"), "    ") + "\n"


HELLO = """
- name: hello
  type: component
  properties:
    image: ghcr.io/acme/hello:1.0
  traits:
    - type: spreadscaler
      properties:
        instances: 2
"""


def problems_of(text: str) -> list[Problem]:
    return validate(parse_manifest(text))


def errors_of(text: str) -> list[str]:
    return [str(p) for p in problems_of(text) if p.is_error]


def warnings_of(text: str) -> list[str]:
    return [str(p) for p in problems_of(text) if not p.is_error]


def test_minimal_manifest_loads_with_no_problems() -> None:
    manifest = load_manifest(app(HELLO))
    assert manifest.name == "demo"
    assert manifest.version == "v1"
    comp = manifest.components[0]
    assert manifest.component_id(comp) == "demo-hello"
    assert comp.scaler_trait is not None and comp.scaler_trait.scaler is not None
    assert comp.scaler_trait.scaler.instances == 2
    assert validate(manifest) == []


def test_json_manifest_is_accepted() -> None:
    data = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "j", "annotations": {}},
        "spec": {"components": [{"name": "c", "type": "component", "properties": {"image": "a/b:1"},
                                 "traits": [{"type": "daemonscaler", "properties": {"instances": 1}}]}]},
    }
    assert load_manifest(json.dumps(data)).components[0].name == "c"


def test_unversioned_manifest_gets_a_stable_content_version() -> None:
    text = app(HELLO).replace("  annotations:\n    version: v1\n", "")
    a, b = load_manifest(text), load_manifest(text)
    assert a.version == b.version and a.version.startswith("auto-")
    changed = load_manifest(text.replace("instances: 2", "instances: 3"))
    assert changed.version != a.version


def test_replicas_is_accepted_for_instances() -> None:
    manifest = load_manifest(app(HELLO.replace("instances", "replicas")))
    trait = manifest.components[0].scaler_trait
    assert trait is not None and trait.scaler is not None and trait.scaler.instances == 2


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("instances: 2", "instances: -1"), "must be 0 or more"),
        (("instances: 2", "instances: two"), "expected a whole number"),
        (("instances: 2", "instances: true"), "expected a whole number"),
        (("instances: 2", "instancez: 2"), "unknown key 'instancez' (did you mean 'instances'?)"),
        (("    image: ghcr.io/acme/hello:1.0", "    image: ghcr.io/acme/hello:1.0\n    imagee: x"),
         "unknown key 'imagee' (did you mean 'image'?)"),
        (("type: component", "type: komponent"), "must be one of 'component', 'actor' or 'capability'"),
    ],
)
def test_shape_errors_name_component_and_key(edit: tuple[str, str], fragment: str) -> None:
    text = app(HELLO.replace(*edit))
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    messages = [str(p) for p in caught.value.errors]
    assert any(fragment in m and 'component "hello"' in m for m in messages), messages


@pytest.mark.parametrize("edit", [("instances: 2", "instancs: 2"),
                                  ("  properties:\n    image", "  propertes:\n    image")])
def test_a_misspelt_required_key_is_one_error_not_two(edit: tuple[str, str]) -> None:
    """'instancs' is an unknown key close to 'instances', which is then missing: the same mistake, said once."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(app(HELLO.replace(*edit)))
    wrong, meant = edit[1].split(":")[0].strip(), edit[0].split(":")[0].strip()
    assert [p.message for p in caught.value.errors] == [f"unknown key '{wrong}' (did you mean '{meant}'?)"]


def test_config_values_must_be_text_with_a_hint() -> None:
    text = app(HELLO.replace(
        "    image: ghcr.io/acme/hello:1.0",
        "    image: ghcr.io/acme/hello:1.0\n    config:\n      - name: c\n        properties:\n          port: 8080",
    ))
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    assert any("expected text, got the number 8080 (quote it)" in str(p) for p in caught.value.errors)


def test_invalid_scaler_properties_are_reported_with_other_errors() -> None:
    """A bad spreadscaler does not hide a duplicate name: both are reported at once."""
    text = app(HELLO + HELLO.replace("instances: 2", "spread: []"))
    manifest = parse_manifest(text)
    assert isinstance(manifest.components[1].all_traits[0].properties, InvalidProperties)
    errs = errors_of(text)
    assert any("duplicate component name" in e for e in errs)
    assert any("missing required key 'instances'" in e for e in errs)


def test_duplicate_yaml_keys_are_refused() -> None:
    text = app(HELLO.replace("  traits:", "  traits: []\n  traits:"))
    with pytest.raises(ManifestError, match="appears twice"):
        load_manifest(text)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "- a\n- b", "just text", "a: [", "{", "---\na: 1\n---\nb: 2\n", "\x00\x01", "{\"a\": }"],
)
def test_unreadable_text_is_a_manifest_error(text: str) -> None:
    with pytest.raises(ManifestError):
        load_manifest(text)


def test_bad_bytes_are_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(b"\xff\xfe\xfa")


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(ManifestError, match="more than"):
        load_manifest("\n".join(lines) + "\n")


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(str(tmp_path / "nope.yaml"))


def test_header_and_metadata_rules() -> None:
    text = app(HELLO).replace("name: demo", "name: my.app").replace("version: v1", "version: latest")
    text = text.replace("apiVersion: core.oam.dev/v1beta1", "apiVersion: v2").replace("kind: Application", "kind: App")
    errs = errors_of(text)
    assert any("apiVersion" in e for e in errs)
    assert any(e.startswith("error: kind") for e in errs)
    assert any("'my.app' is not a valid application name" in e for e in errs)
    assert any("'latest' is not allowed" in e for e in errs)
    bad_label = app(HELLO).replace("  annotations:", "  labels:\n    'bad key!': x\n  annotations:")
    assert any("'bad key!' is not a valid label key" in e for e in errors_of(bad_label))


def test_unknown_metadata_key_is_a_warning() -> None:
    text = app(HELLO).replace("  name: demo", "  name: demo\n  namespace: prod")
    assert any("unknown key 'namespace' is ignored" in w for w in warnings_of(text))


def test_two_scalers_on_one_component_is_an_error() -> None:
    text = app(HELLO + "    - type: daemonscaler\n      properties:\n        instances: 1\n")
    assert any("2 scaler traits" in e for e in errors_of(text))


def test_spread_rules() -> None:
    spread = HELLO.replace(
        "instances: 2",
        "instances: 2\n        spread:\n          - {name: a, requirements: {zone: x}, weight: 0}\n"
        "          - {name: a, requirements: {zone: y}, weight: 0}",
    )
    errs = errors_of(app(spread))
    assert any("spread name 'a' is used twice" in e for e in errs)
    assert any("every spread has weight 0" in e for e in errs)
    assert any("weight 0" in w for w in warnings_of(app(spread)))
    negative = spread.replace("weight: 0}", "weight: -5}", 1)
    with pytest.raises(ManifestError, match="must be 0 or more"):
        load_manifest(app(negative))


def test_unknown_trait_type_is_a_warning_with_a_suggestion() -> None:
    text = app(HELLO.replace("type: spreadscaler", "type: spreadscalar"))
    warns = warnings_of(text)
    assert any("unknown trait type 'spreadscalar'" in w and "did you mean 'spreadscaler'" in w for w in warns)
    assert any("will not be started" in w for w in warns)


LINKED = HELLO + """
- name: kv
  type: capability
  properties:
    image: builtin:keyvalue-nats
"""


def link(props: str) -> str:
    body = textwrap.indent(textwrap.dedent(props).strip("\n"), "        ")
    return "    - type: link\n      properties:\n" + body + "\n"


def test_link_to_missing_component_is_an_error_with_suggestion() -> None:
    text = app(HELLO + link("target: {name: kb}\nnamespace: wasi\npackage: keyvalue\ninterfaces: [store]")
               + LINKED.replace(HELLO, ""))
    errs = errors_of(text)
    assert any('link target "kb" is missing' in e and "did you mean 'kv'" in e for e in errs), errs


def test_link_with_unknown_key_is_rejected() -> None:
    text = app(HELLO + link("target: kv\nnamespace: wasi\npackage: keyvalue\ninterfaces: [store]\nsource_confg: []")
               + LINKED.replace(HELLO, ""))
    errs = errors_of(text)
    assert any("unknown key 'source_confg'" in e and "did you mean 'source_config'" in e for e in errs), errs


def test_link_with_no_interfaces_is_rejected() -> None:
    text = app(HELLO + link("target: kv\nnamespace: wasi\npackage: keyvalue\ninterfaces: []")
               + LINKED.replace(HELLO, ""))
    assert any("must not be empty" in e for e in errors_of(text))


def test_deprecated_and_new_config_keys_together_are_rejected() -> None:
    text = app(HELLO + link(
        "target: {name: kv, config: [{name: a, properties: {x: '1'}}]}\n"
        "target_config: [{name: b, properties: {x: '1'}}]\nnamespace: wasi\npackage: keyvalue\ninterfaces: [store]"
    ) + LINKED.replace(HELLO, ""))
    assert any("keep only 'target.config'" in e for e in errors_of(text))


def test_known_namespace_typos_are_warnings_custom_namespaces_are_not() -> None:
    typo = app(HELLO + link("target: kv\nnamespace: wasi\npackage: keyvalue\ninterfaces: [stor]")
               + LINKED.replace(HELLO, ""))
    assert any("[wasi:keyvalue/stor]" in w and "did you mean 'store'" in w for w in warnings_of(typo))
    custom = typo.replace("namespace: wasi", "namespace: acme")
    assert warnings_of(custom) == []


def test_distinct_link_names_allow_two_links_on_one_interface() -> None:
    two = link("target: kv\nnamespace: wasi\npackage: keyvalue\ninterfaces: [store]\nname: one") + link(
        "target: kv\nnamespace: wasi\npackage: keyvalue\ninterfaces: [store]\nname: two"
    )
    assert errors_of(app(HELLO + two + LINKED.replace(HELLO, ""))) == []
    same = two.replace("name: two", "name: one")
    assert any("duplicate link found" in e for e in errors_of(app(HELLO + same + LINKED.replace(HELLO, ""))))


def test_inline_config_defined_twice_differently_is_an_error() -> None:
    cfg = "    config:\n      - name: shared\n        properties: {a: '1'}\n"
    other = LINKED.replace(HELLO, "").replace("image: builtin:keyvalue-nats",
                                              "image: builtin:keyvalue-nats\n" + cfg.replace("'1'", "'2'"))
    text = app(HELLO.replace("    image: ghcr.io/acme/hello:1.0\n",
                             "    image: ghcr.io/acme/hello:1.0\n" + cfg) + other)
    assert any("config 'shared' is defined with different properties" in e for e in errors_of(text))


def test_colliding_generated_ids_are_an_error() -> None:
    text = app(HELLO + HELLO.replace("name: hello", "name: Hello"))
    assert any("resolves to component id 'demo-hello'" in e for e in errors_of(text))


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("file:///opt/x.wasm", True),
        ("file://./build/x.wasm", True),
        ("./x.wasm", True),
        ("https://example.com/x.wasm", True),
        ("lattice://sha256:" + "0" * 64, True),
        ("ghcr.io/acme/hello:1.0", True),
        ("lattice://sha256:xyz", False),
        ("ftp://example.com/x.wasm", False),
        ("Not An Image", False),
    ],
)
def test_image_forms(image: str, ok: bool) -> None:
    text = app(HELLO.replace("ghcr.io/acme/hello:1.0", f"'{image}'"))
    errs = errors_of(text)
    assert (errs == []) is ok, errs
    if not ok:
        assert any('component "hello"' in e and "image" in e for e in errs)


def test_builtin_image_is_for_providers_only() -> None:
    assert errors_of(app(LINKED)) == []
    text = app(HELLO.replace("ghcr.io/acme/hello:1.0", "builtin:http-server"))
    assert any("use type: capability" in e for e in errors_of(text))


def test_relative_images_resolve_against_the_manifest_directory(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "x.wasm").write_bytes(b"\0asm")
    path = tmp_path / "app.yaml"
    path.write_text(app(HELLO.replace("ghcr.io/acme/hello:1.0", "./build/x.wasm")))
    manifest = load_manifest(path)
    assert manifest.components[0].image == f"file://{tmp_path}/build/x.wasm"
    other = load_manifest(path.read_text(), base_dir="/srv/apps")
    assert other.components[0].image == "file:///srv/apps/build/x.wasm"
    unresolved = load_manifest(path.read_text())
    assert unresolved.components[0].image == "./build/x.wasm"
    ref = parse_image("./build/x.wasm", tmp_path)
    assert ref.kind is ImageKind.FILE and ref.location == f"{tmp_path}/build/x.wasm"


def test_check_manifest_warns_about_missing_local_files(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(app(HELLO.replace("ghcr.io/acme/hello:1.0", "./missing.wasm")))
    manifest, problems = check_manifest(path)
    assert manifest is not None
    assert any("does not exist" in str(p) and not p.is_error for p in problems)


def test_validation_report_texts(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(app(HELLO.replace("type: spreadscaler", "type: spreadscalar")))
    ok, text = validation_report(good)
    assert ok
    assert "valid manifest for application 'demo' (v1)" in text
    assert "warning:" in text and "spreadscalar" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(app(HELLO + HELLO))
    ok, text = validation_report(bad)
    assert not ok
    assert "invalid manifest" in text and "error:" in text and "duplicate component name" in text
    ok, text = validation_report(tmp_path / "absent.yaml")
    assert not ok and "no such file" in text


def test_names_the_lattice_cannot_store_are_errors() -> None:
    bad_link = link("target: kv\nnamespace: wasi\npackage: key_value\ninterfaces: [Store]\nname: 'bad name'")
    errs = errors_of(app(HELLO + bad_link + LINKED.replace(HELLO, "")))
    assert any("package 'key_value' is not a WIT identifier" in e for e in errs)
    assert any("link name 'bad name'" in e for e in errs)
    bad_id = HELLO.replace("    image: ghcr.io/acme/hello:1.0", "    image: ghcr.io/acme/hello:1.0\n    id: 'a b'")
    assert any("id 'a b' must be" in e for e in errors_of(app(bad_id)))
    bad_cfg = HELLO.replace("    image: ghcr.io/acme/hello:1.0",
                            "    image: ghcr.io/acme/hello:1.0\n    config: [{name: 'x/y'}]")
    assert any("config name 'x/y'" in e for e in errors_of(app(bad_cfg)))


def test_the_example_in_the_user_docs_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"
    if not docs.exists():
        pytest.skip("docs/manifests.md not present")
    example = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    manifest = load_manifest(example, base_dir="/srv/shop")
    assert validate(manifest) == []
    assert manifest.component("cart").image == "file:///srv/shop/examples/hello-python/build/hello.wasm"


def test_an_oci_image_without_a_registry_is_a_warning() -> None:
    text = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: oci}
spec:
  components:
    - name: a
      type: component
      properties: {image: "test:latest"}
      traits: [{type: spreadscaler, properties: {instances: 1}}]
    - name: b
      type: component
      properties: {image: "localhost:5000/team/b:1"}
      traits: [{type: spreadscaler, properties: {instances: 1}}]
"""
    problems = validate(load_manifest(text))
    assert not [p for p in problems if p.is_error], problems
    about = [p.message for p in problems if "names no registry" in p.message]
    assert len(about) == 1 and "'test:latest'" in about[0]
