"""Whatever it is fed, the manifest loader returns a Manifest or raises ManifestError — never anything else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trellis.wadm.manifest import Manifest, ManifestError, load_manifest, manifest_from_data, parse_data, validate

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "wadm"
FILES = sorted(CORPUS.rglob("*.y*ml")) + sorted(CORPUS.rglob("*.json")) if CORPUS.is_dir() else []
FILES = [f for f in FILES if f.name != "oam.schema.json"]

TEMPLATE: dict[str, Any] = {
    "apiVersion": "core.oam.dev/v1beta1",
    "kind": "Application",
    "metadata": {"name": "fuzz", "annotations": {"version": "v1"}, "labels": {"a": "b"}},
    "spec": {
        "policies": [{"name": "p", "type": "policy.secret.wasmcloud.dev/v1alpha1", "properties": {"backend": "x"}}],
        "components": [
            {
                "name": "c",
                "type": "component",
                "properties": {"image": "ghcr.io/a/c:1", "id": "cid",
                               "config": [{"name": "cfg", "properties": {"k": "v"}}]},
                "traits": [
                    {"type": "spreadscaler", "properties": {"instances": 3, "spread": [
                        {"name": "s", "requirements": {"zone": "a"}, "weight": 50}]}},
                    {"type": "link", "properties": {"target": {"name": "p", "config": [{"name": "t"}]},
                                                    "namespace": "wasi", "package": "keyvalue",
                                                    "interfaces": ["store"], "name": "n",
                                                    "source": {"config": [{"name": "s", "properties": {}}]}}},
                ],
            },
            {"name": "p", "type": "capability", "properties": {"image": "builtin:kv"},
             "traits": [{"type": "daemonscaler", "properties": {"replicas": 1}},
                        {"type": "custom", "properties": [1, 2]}]},
        ],
    },
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["component", "capability", "actor", "link", "spreadscaler", "daemonscaler", "linkdef",
                     "wasi", "file://./x.wasm", "lattice://sha256:" + "a" * 64, "builtin:x", "name", "target"]),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(
    ["name", "type", "properties", "traits", "image", "application", "id", "config", "instances", "replicas",
     "spread", "weight", "requirements", "target", "source", "source_config", "target_config", "namespace",
     "package", "interfaces", "components", "metadata", "spec", "annotations", "labels", "policies", "secrets"]))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=25,
)


def must_not_crash(data: Any) -> None:
    try:
        manifest = manifest_from_data(data)
    except ManifestError as exc:
        assert exc.problems and all(p.is_error for p in exc.errors)
        str(exc)
        return
    assert isinstance(manifest, Manifest)
    for problem in validate(manifest):
        str(problem)
    manifest.digest()
    assert isinstance(manifest.version, str)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(data)))
        if not where:
            continue
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        key = where[-1]
        action = draw(st.sampled_from(["replace", "delete", "insert", "duplicate"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "insert" and isinstance(parent[key], dict):
            parent[key][draw(keys)] = draw(values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return data


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(values)
def test_random_data_never_crashes(data: Any) -> None:
    must_not_crash(data)


@fuzz
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_random_text_never_crashes(text: str) -> None:
    try:
        load_manifest(text if "\n" in text or not text.endswith((".yaml", ".yml", ".json")) else text + "\n")
    except ManifestError:
        pass


@fuzz
@given(mutated(TEMPLATE))
def test_mutated_template_never_crashes(data: Any) -> None:
    must_not_crash(data)
    # and the same through YAML text, when PyYAML can write it
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    try:
        load_manifest(text)
    except ManifestError:
        pass


@pytest.mark.skipif(not FILES, reason=f"wadm conformance corpus not found at {CORPUS}")
@fuzz
@given(st.data())
def test_mutated_corpus_files_never_crash(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(FILES))
    base = parse_data(path.read_text())
    must_not_crash(data.draw(mutated(base)))


@fuzz
@given(mutated(TEMPLATE))
def test_json_text_round_trip_never_crashes(data: Any) -> None:
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return
    try:
        load_manifest(text)
    except ManifestError:
        pass
