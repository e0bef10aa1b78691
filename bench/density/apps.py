"""The small app of the density benchmark: its copies and the manifests that deploy them.

``bench/components/small-app`` is built once (``trellis build``, content-cached).
Copy K is that component with one custom section added (``trellis-bench-app`` =
its name): the same code, a different digest, hence its own compiled artifact
and its own code in every worker, as N different apps would have. Copies are
written once per machine under :data:`COPIES` and compiled once into the bench's
compile cache (``~/.cache/trellis-bench/compiled``, the engine the workers use),
so a host loads each in milliseconds instead of compiling 18 MiB of Wasm.

The manifests (``*.yaml`` in the benchmark's scratch directory):

* ``density-shared``: a *shared* application (``experimental.wasmcloud.dev/shared``)
  with ``builtin:http-server`` and ``builtin:keyvalue-nats``;
* ``density-app-K``: the copy, with its name in an inline config (``app``), its
  key-value link to the shared provider (bucket ``density-app-K``) and the shared
  HTTP server's link to it: one listener, routed by ``Host: app-K.density``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .._context import BENCH_CACHE
from ..http.tools import BUILD, COMPONENTS

SMALL_APP = COMPONENTS / "small-app"
COPIES = BENCH_CACHE.parent / "density-copies"
SHARED_APP = "density-shared"
SECTION = b"trellis-bench-app"


def app_name(k: int) -> str:
    return f"density-app-{k}"


def host_header(k: int) -> str:
    return f"app-{k}.density"


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm: bytes, name: bytes, payload: bytes) -> bytes:
    """``wasm`` with a custom section appended (a component may end with one): same code, new digest."""
    body = _leb128(len(name)) + name + payload
    return wasm + b"\x00" + _leb128(len(body)) + body


def small_app_wasm() -> Path:
    """``bench/components/small-app`` built (``trellis build``, cached by content)."""
    from trellis.build import build_app

    return build_app(SMALL_APP, BUILD / "density")


def copies(n: int) -> list[Path]:
    """Copies 1..n of the small app (written once per build of it)."""
    base = small_app_wasm()
    wasm = base.read_bytes()
    from trellis.host.runtime.cache import wasm_digest

    folder = COPIES / wasm_digest(wasm)[:16]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(1, n + 1):
        path = folder / f"{app_name(k)}.wasm"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(with_custom_section(wasm, SECTION, app_name(k).encode()))
            tmp.rename(path)
        out.append(path)
    return out


def compile_into(wasms: list[Path], compiled: Path | None) -> None:
    """Compile each component once per machine (the workers' engine: no fuel) into the bench's
    cache, and copy the artifacts into a host's compile cache ``compiled`` (None: only compile)."""
    from trellis.host.runtime import CompileCache, make_engine, wasmtime_patches
    from trellis.host.runtime.engine import EngineSettings

    wasmtime_patches.apply()  # this process makes an engine, as a worker does
    engine = make_engine(EngineSettings(consume_fuel=False))
    cache = CompileCache(BENCH_CACHE)
    if compiled is not None:
        compiled.mkdir(parents=True, exist_ok=True)
    try:
        for i, wasm in enumerate(wasms):
            data = wasm.read_bytes()
            from trellis.host.runtime.cache import wasm_digest

            art = cache.path_for(engine, wasm_digest(data))
            assert art is not None
            if not art.exists():
                print(f"   compiling {wasm.name} ({i + 1}/{len(wasms)}, once per machine) …", flush=True)
                cache._load_uncached(engine, data, wasm_digest(data))
            if compiled is not None and not (compiled / art.name).exists():
                shutil.copyfile(art, compiled / art.name)
    finally:
        engine.close()


def shared_manifest() -> str:
    return f"""apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {SHARED_APP}
  annotations:
    description: the density benchmark's shared providers (HTTP in, key-value)
    experimental.wasmcloud.dev/shared: "true"
spec:
  components:
    - name: httpserver
      type: capability
      properties:
        image: builtin:http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: keyvalue
      type: capability
      properties:
        image: builtin:keyvalue-nats
      traits:
        - type: spreadscaler
          properties:
            instances: 1
"""


def app_manifest(k: int, wasm: Path, port: int, instances: int = 2, max_idle_s: float | None = None) -> str:
    """Copy ``k``: its component, linked to the shared key-value provider, routed by the shared HTTP
    server (``Host: app-K.density`` on 127.0.0.1:``port``). ``max_idle_s``: instances are reused and
    dropped after that long idle (default: a fresh instance per request)."""
    name = app_name(k)
    reuse = (f"""
        reuse:
          max_invocations: 1000000
          max_idle_s: {max_idle_s:g}""" if max_idle_s is not None else "")
    return f"""apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    description: copy {k} of the density benchmark's small app
spec:
  components:
    - name: app
      type: component
      properties:
        image: {wasm}
        config:
          - name: name
            properties:
              app: {name}{reuse}
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
        - type: link
          properties:
            target:
              name: keyvalue
              config:
                - name: kv
                  properties:
                    bucket: {name}
            namespace: wasi
            package: keyvalue
            interfaces: [store, atomics]
    - name: keyvalue
      type: capability
      properties:
        application: {{name: {SHARED_APP}, component: keyvalue}}
    - name: httpserver
      type: capability
      properties:
        application: {{name: {SHARED_APP}, component: httpserver}}
      traits:
        - type: link
          properties:
            target: {{name: app}}
            name: {name}   # one link per app from the one shared server: each has its own name
            namespace: trellis
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: route
                  properties:
                    address: 127.0.0.1:{port}
                    host: {host_header(k)}
"""
