"""Wasm components in OCI registries, in the format `wash oci push` and `wkg` use.

An artifact is an OCI image manifest with config ``application/vnd.wasm.config.v0+json`` and
one layer ``application/wasm`` (older wasmCloud tooling wrote other layer types; any single
Wasm layer is read). The registry talk is the ``oras`` library's; this module decides the
format, the credentials and the errors a user reads.

Credentials, first found wins: the explicit ones (flags), ``TRELLIS_OCI_TOKEN`` or
``TRELLIS_OCI_USER``/``TRELLIS_OCI_PASSWORD``, then ``~/.docker/config.json`` (``auths`` and
credential helpers, as docker and wash read it); with none, anonymous (registries that hand out
anonymous bearer tokens work too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trellis.interfaces.artifacts import ArtifactError
from trellis.interfaces.errors import ErrorCode

WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"
#: what older wasmCloud tooling and other clients wrote for the one Wasm layer
WASM_LAYERS = (WASM_LAYER, "application/vnd.module.wasm.content.layer.v1+wasm",
               "application/vnd.wasm.content.layer.v1+wasm")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_ACCEPT = [OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"]
REQUEST_TIMEOUT_S = 60.0
MAX_LAYER_BYTES = 512 * 1024 * 1024

_REF = re.compile(
    r"^(?P<registry>[^/]+)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class OciRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None  # the manifest's, when pinned with @sha256:

    @property
    def reference(self) -> str:
        """What the registry's manifest URL takes: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return (f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


def looks_like_registry(host: str) -> bool:
    """Is the first part of a reference a registry host (a dot, a port, or localhost)?"""
    return "." in host or ":" in host or host == "localhost"


def parse_oci(text: str) -> OciRef:
    """``[oci://]REGISTRY/REPO[:TAG][@sha256:…]``; a missing tag means ``latest``."""
    raw = text.strip()
    if raw.startswith("oci://"):
        raw = raw[len("oci://"):]
    m = _REF.match(raw)
    if not m or not looks_like_registry(m.group("registry")):
        raise ArtifactError(f"bad OCI reference {text!r}: expected REGISTRY/REPOSITORY:TAG or "
                            "REGISTRY/REPOSITORY@sha256:<digest> (e.g. ghcr.io/org/component:0.1.0)")
    tag = m.group("tag")
    digest = m.group("digest")
    return OciRef(m.group("registry"), m.group("repo"), tag if tag or digest else "latest", digest)


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls) -> Credentials:
        return cls(os.environ.get("TRELLIS_OCI_USER") or None, os.environ.get("TRELLIS_OCI_PASSWORD") or None,
                   os.environ.get("TRELLIS_OCI_TOKEN") or None)

    def __bool__(self) -> bool:
        return bool(self.token or self.username)


def insecure_allowed(registry: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """May this registry be reached over plain HTTP? ``*`` allows every registry."""
    return "*" in allowed or registry in allowed or registry.split(":")[0] in allowed


def _auth_backend(ref: OciRef, insecure: bool, what: str) -> str:
    """Ask ``/v2/`` how the registry authenticates: ``basic`` (htpasswd) or ``token`` (bearer, the default)."""
    import requests

    try:
        probe = requests.get(f"{'http' if insecure else 'https'}://{ref.registry}/v2/", timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # requests' connection and TLS errors, one line for the user
        raise _failed(ref, what, exc) from None
    challenge = probe.headers.get("WWW-Authenticate", "")
    return "basic" if probe.status_code == 401 and challenge.lower().startswith("basic") else "token"


def _registry(ref: OciRef, insecure: bool, creds: Credentials | None, what: str) -> Any:
    try:
        import oras.provider
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ArtifactError("OCI registries need the 'oras' package (pip install oras)") from None

    fixed_token = bool(creds.token) if creds else bool(os.environ.get("TRELLIS_OCI_TOKEN"))

    class _OneTry(oras.provider.Registry):
        """oras retries a failed request five times with sleeps of up to 83 s; a host reports at once.

        oras also keeps the first bearer token it gets and offers it again when a later request
        needs another scope (a push's upload after its pull-scoped HEAD); the registry answers
        401 insufficient_scope, and then a token for this request's scope is asked for."""

        def do_request(self, *args: Any, **kwargs: Any) -> Any:
            once = oras.provider.Registry.do_request.__wrapped__
            resp = once(self, *args, **kwargs)
            challenge = resp.headers.get("Www-Authenticate", "")
            if (resp.status_code == 401 and "insufficient_scope" in challenge and not fixed_token
                    and getattr(self.auth, "token", None)):
                self.auth.token = None
                resp = once(self, *args, **kwargs)
            return resp

    reg = _OneTry(hostname=ref.registry, insecure=insecure, auth_backend=_auth_backend(ref, insecure, what))
    reg.session.request = functools.partial(reg.session.request, timeout=REQUEST_TIMEOUT_S)
    creds = creds if creds else Credentials.from_env()
    if creds.token:
        reg.auth.set_token_auth(creds.token)
    elif creds.username:
        reg.auth.set_basic_auth(creds.username, creds.password or "")
    return reg


def _container(reg: Any, ref: OciRef) -> Any:
    import oras.container

    return oras.container.Container(f"{ref.registry}/{ref.repository}:{ref.tag or 'latest'}"
                                    if not ref.digest else f"{ref.registry}/{ref.repository}@{ref.digest}")


def _ready(reg: Any, ref: OciRef, what: str) -> Any:
    """The container, with credentials from ~/.docker/config.json where none were given."""
    container = _container(reg, ref)
    reg.auth.load_configs(container)
    if type(reg.auth).__name__ == "BasicAuth" and getattr(reg.auth, "_basic_auth", None) is None:
        raise _failed(ref, what, status=401)  # a basic-auth registry and nothing to answer it with
    return container


def _failed(ref: OciRef, what: str, exc: BaseException | None = None, status: int | None = None) -> ArtifactError:
    """One line: what failed, where, why, and what to do about it."""
    text = str(exc) if exc is not None else ""
    if "Cannot respond to request for authentication" in text:
        status = 401
    if status in (401, 403):
        cause = (f"HTTP {status}: not authorised (--user/--password, TRELLIS_OCI_USER/TRELLIS_OCI_PASSWORD, "
                 "TRELLIS_OCI_TOKEN, or credentials in ~/.docker/config.json)")
    elif status == 404:
        cause = "HTTP 404: no such repository, tag or digest"
    elif status is not None:
        cause = f"HTTP {status}"
    elif "SSL" in type(exc).__name__ or "SSL" in text or "wrong version number" in text:
        plain_http = "--insecure" if what == "push" else f"--allow-insecure-registries {ref.registry} on the host"
        cause = f"TLS failed (for a plain-HTTP registry use {plain_http})"
    elif "Connection refused" in text or "Failed to establish" in text or "Max retries" in text:
        cause = "cannot connect (is the registry running and reachable from this machine?)"
    else:
        cause = " ".join(text.split())[:240] or type(exc).__name__
    where = "to" if what == "push" else "from"
    return ArtifactError(f"cannot {what} {ref} {where} registry {ref.registry}: {cause}", ErrorCode.NOT_FOUND)


def resolve(ref: OciRef, *, insecure: bool = False,
            creds: Credentials | None = None) -> tuple[Any, dict[str, Any], str]:
    """(registry, manifest, the Wasm layer's digest) for ``ref``; checks a pinned manifest digest."""
    reg = _registry(ref, insecure, creds, "pull")
    container = _ready(reg, ref, "pull")
    url = f"{reg.prefix}://{container.manifest_url()}"
    try:
        resp = reg.do_request(url, "GET", headers={"Accept": ", ".join(_ACCEPT)})
    except Exception as exc:  # requests' and oras' errors, one line for the user
        raise _failed(ref, "pull", exc) from None
    if resp.status_code != 200:
        raise _failed(ref, "pull", status=resp.status_code)
    body = resp.content
    if ref.digest and "sha256:" + hashlib.sha256(body).hexdigest() != ref.digest:
        raise ArtifactError(f"digest mismatch for {ref}: the registry's manifest has "
                            f"sha256:{hashlib.sha256(body).hexdigest()}")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise ArtifactError(f"{ref}: the registry's manifest is not JSON") from None
    layers = manifest.get("layers") or []
    wasm = [layer for layer in layers if layer.get("mediaType") in WASM_LAYERS]
    if len(wasm) != 1 and len(layers) == 1:
        wasm = layers  # one layer of an unknown type: read it and check it is Wasm
    if len(wasm) != 1:
        kinds = ", ".join(sorted({str(layer.get("mediaType")) for layer in layers})) or "no layers"
        raise ArtifactError(f"{ref} is not a Wasm component artifact (layers: {kinds})")
    layer = wasm[0]
    if int(layer.get("size") or 0) > MAX_LAYER_BYTES:
        raise ArtifactError(f"{ref}: the component is larger than {MAX_LAYER_BYTES} bytes")
    return reg, manifest, str(layer["digest"])


def pull(ref: OciRef, *, insecure: bool = False, creds: Credentials | None = None,
         have: Any = None) -> tuple[bytes | None, str]:
    """(the component's bytes, their sha256 digest). Blocking: run it in a thread.

    ``have(digest) -> bool`` says whether the layer is cached already; then no blob is fetched and
    the bytes are None.
    """
    reg, _manifest, digest = resolve(ref, insecure=insecure, creds=creds)
    if have is not None and have(digest):
        return None, digest
    container = _container(reg, ref)
    try:
        resp = reg.get_blob(container, digest)
    except Exception as exc:
        raise _failed(ref, "pull", exc) from None
    if resp.status_code != 200:
        raise _failed(ref, "pull", status=resp.status_code)
    data = resp.content
    got = "sha256:" + hashlib.sha256(data).hexdigest()
    if got != digest:
        raise ArtifactError(f"digest mismatch for {ref}: the manifest names {digest}, the registry sent {got}")
    return data, digest


def push(ref: OciRef, data: bytes, *, insecure: bool = False, creds: Credentials | None = None,
         annotations: dict[str, str] | None = None) -> str:
    """Publish ``data`` as a single-layer Wasm artifact; returns the manifest's digest."""
    if ref.digest:
        raise ArtifactError(f"push to a tag, not a digest: {ref}")
    reg = _registry(ref, insecure, creds, "push")
    container = _ready(reg, ref, "push")
    layer_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    config = json.dumps({"created": now, "architecture": "wasm", "os": "wasip2",
                         "layerDigests": [layer_digest]}, separators=(",", ":")).encode()
    with tempfile.TemporaryDirectory() as tmp:
        blobs = []
        for name, blob, media in (("component.wasm", data, WASM_LAYER), ("config.json", config, WASM_CONFIG)):
            path = Path(tmp) / name
            path.write_bytes(blob)
            desc = {"mediaType": media, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}
            blobs.append((path, desc))
        try:
            for path, desc in blobs:
                resp = reg.upload_blob(str(path), container, desc)
                if resp.status_code not in (200, 201, 202):
                    raise _failed(ref, "push", status=resp.status_code)
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[1][1],
                        "layers": [blobs[0][1]],
                        "annotations": {"org.opencontainers.image.created": now, **(annotations or {})}}
            body = json.dumps(manifest, separators=(",", ":")).encode()
            resp = reg.do_request(f"{reg.prefix}://{container.manifest_url()}", "PUT",
                                  headers={"Content-Type": OCI_MANIFEST}, data=body)
        except ArtifactError:
            raise
        except Exception as exc:
            raise _failed(ref, "push", exc) from None
    if resp.status_code not in (200, 201):
        raise _failed(ref, "push", status=resp.status_code)
    return "sha256:" + hashlib.sha256(body).hexdigest()
