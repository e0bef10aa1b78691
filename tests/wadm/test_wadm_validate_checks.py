"""`trellis app validate`: every problem in one pass, built-in names, links against what targets export,
``-o json``, and ``--config`` overrides."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.components.build import build_wat
from tests.harness import run_cli
from trellis.interfaces.builtin_providers import BUILTIN_PROVIDERS
from trellis.wadm.manifest import check_manifest
from trellis.wadm.manifest.overrides import OverrideError, apply_overrides
from trellis.wadm.manifest.wasm_exports import NotAComponent, component_exports

SEVEN_ERRORS = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: bad app
  annotations: {version: latest}
spec:
  components:
    - name: web
      type: componnt
      properties: {image: ./web.wasm}
      traits:
        - type: spreadscaler
          properties: {instances: -1}
        - type: link
          properties: {target: {name: nowhere}, namespace: wasi, package: keyvalue, interfaces: [store]}
    - name: kv
      type: capability
      properties: {image: "builtin:keyvalue"}
    - name: kv
      type: capability
      properties: {image: "bad image"}
"""


def _write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_a_bad_component_type_does_not_hide_the_other_errors(tmp_path: Path) -> None:
    _, problems = check_manifest(_write(tmp_path, SEVEN_ERRORS))
    errors = [str(p) for p in problems if p.is_error]
    for fragment in ("got the text 'componnt'", "'bad app' is not a valid application name",
                     "'latest' is not allowed", "duplicate component name", "must be 0 or more",
                     "contains whitespace", "no built-in provider 'keyvalue' (did you mean 'keyvalue-nats'?)",
                     'link target "nowhere" is missing'):
        assert sum(fragment in e for e in errors) == 1, (fragment, errors)
    assert len(errors) == 8, errors


def test_validate_json_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    out = run_cli("app", "validate", str(_write(tmp_path, SEVEN_ERRORS)), "-o", "json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["valid"] is False and len(report["errors"]) == 8
    assert {"level", "where", "message"} == set(report["errors"][0])
    assert report["errors"][0]["level"] == "error"
    out = run_cli("app", "validate", str(_write(tmp_path, SEVEN_ERRORS)), "-o", "yaml")
    assert out.returncode == 1 and "valid: false" in out.stdout


def _http_app(image: Path, namespace: str) -> str:
    return f"""
    apiVersion: core.oam.dev/v1beta1
    kind: Application
    metadata: {{name: web}}
    spec:
      components:
        - name: app
          type: component
          properties: {{image: {image}}}
          traits:
            - type: spreadscaler
              properties: {{instances: 1}}
            - type: link
              properties: {{target: {{name: kv}}, namespace: wasi, package: keyvalue, interfaces: [store, queue]}}
        - name: kv
          type: capability
          properties: {{image: "builtin:keyvalue-nats"}}
        - name: http
          type: capability
          properties: {{image: "builtin:http-server"}}
          traits:
            - type: link
              properties: {{target: {{name: app}}, namespace: {namespace}, package: http,
                            interfaces: [incoming-handler]}}
    """


def test_links_are_checked_against_what_their_target_exports_and_serves(tmp_path: Path) -> None:
    adder = build_wat("adder")  # exports test:adder/math, not an HTTP handler
    _, problems = check_manifest(_write(tmp_path, _http_app(adder, "wasi")))
    errors = [str(p) for p in problems if p.is_error]
    assert any('component "app" does not export wasi:http/incoming-handler; it exports test:adder/math@0.1.0' in e
               for e in errors), errors
    assert any("builtin:keyvalue-nats does not serve wasi:keyvalue/queue" in e for e in errors), errors
    # the server calls trellis:http or wasi:http handlers, nothing else
    _, problems = check_manifest(_write(tmp_path, _http_app(adder, "wasmcloud")))
    assert any("builtin:http-server does not call wasmcloud:http/incoming-handler" in str(p) for p in problems)
    # a target that cannot be read is not judged
    _, problems = check_manifest(_write(tmp_path, _http_app(tmp_path / "absent.wasm", "wasi")))
    assert not any("does not export" in str(p) for p in problems)


def test_export_reader_matches_the_component_and_refuses_other_bytes() -> None:
    exports = component_exports(build_wat("middle").read_bytes())
    assert exports.interfaces == ("test:chain/next",)
    for junk in (b"", b"not wasm", b"\x00asm\x01\x00\x00\x00"):
        with pytest.raises(NotAComponent):
            component_exports(junk)


def test_builtin_catalog_names_the_builtin_modules() -> None:
    import pkgutil

    import trellis.providers.builtin as pkg
    # modules that are not providers: the process a host runs its built-ins in, and http-client's
    # wasi:http half
    not_providers = {"group", "http-client-wasi"}
    modules = {m.name.replace("_", "-") for m in pkgutil.iter_modules(pkg.__path__)
               if not m.name.startswith("_")}
    assert set(BUILTIN_PROVIDERS) == modules - not_providers and not_providers <= modules


def test_config_overrides_change_inline_configs_only() -> None:
    text = _http_app(Path("/x.wasm"), "trellis").replace(
        "interfaces: [incoming-handler]}",
        "interfaces: [incoming-handler], source: {config: [{name: listen, properties: {address: '0.0.0.0:80'}}]}}")
    out = apply_overrides(textwrap.dedent(text), ["listen.address=127.0.0.1:9090", "listen.max_body_bytes=10"])
    assert "address: 127.0.0.1:9090" in out and "max_body_bytes: '10'" in out
    with pytest.raises(OverrideError, match="no inline config 'nope'; its inline configs: listen"):
        apply_overrides(textwrap.dedent(text), ["nope.address=x"])
    with pytest.raises(OverrideError, match="NAME.KEY=VALUE"):
        apply_overrides(textwrap.dedent(text), ["address"])
