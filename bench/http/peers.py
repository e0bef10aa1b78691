"""The systems under load: each starts its processes on 127.0.0.1, says where to send the load, stops by pid.

Every system serves ``POST /orders`` with the same logic
(``bench/components/common/order_logic.py``) or, for the full app, the
orders application of ``examples/platform-poc``. A system is:

* ``start()``: start its processes, wait (bounded) until ``POST /orders``
  answers 201 with the expected JSON;
* ``url`` and ``host_header``: where wrk sends the load;
* ``roots``: the pids whose process trees are the system (CPU and RSS);
* ``info``: what it is (mode, instances, processes) for the report;
* ``stop()``: SIGTERM, grace, SIGKILL, by pid only.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trellis.kit import procs

from . import tools
from .load import BODY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_order(port: int, host_header: str | None = None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        headers = {"content-type": "application/json"}
        if host_header:
            headers["host"] = host_header
        conn.request("POST", "/orders", body=BODY, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def check_answer(status: int, body: bytes, full_app: bool) -> str:
    """Why an answer is not the expected one ('' when it is)."""
    if status != 201:
        return f"status {status}: {body[:200]!r}"
    if full_app:
        return ""
    try:
        order = json.loads(body)
        assert order["total"] == 1000 and len(order["order_number"]) == 36
    except (ValueError, KeyError, TypeError, AssertionError):
        return f"unexpected body {body[:200]!r}"
    return ""


class System:
    name = "?"
    family = "?"        # trellis / wasmtime / wasmcloud / uvicorn
    full_app = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_header: str | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self.info: dict[str, Any] = {}
        self.startup_s = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/orders"

    @property
    def roots(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    def spawn(self, argv: list[str], log: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        logf = open(self.workdir / f"{log}.log", "ab")  # noqa: SIM115 (closed below once the child has it)
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        finally:
            logf.close()
        self._procs.append(p)
        return p

    def log_tail(self, n: int = 1500) -> str:
        return "\n".join(f"[{f.name}] {f.read_text(errors='replace')[-n:]}" for f in sorted(self.workdir.glob("*.log")))

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        why = "no answer"
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    argv0 = str(p.args[0] if isinstance(p.args, list) else p.args)
                    raise RuntimeError(f"{self.name}: {argv0} exited with {p.returncode}\n{self.log_tail()}")
            try:
                status, body = post_order(self.port, self.host_header)
                why = check_answer(status, body, self.full_app)
                if not why:
                    return
            except OSError as exc:
                why = repr(exc)
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: not ready after {timeout_s:.0f} s ({why})\n{self.log_tail()}")

    def start(self) -> None:
        t = time.perf_counter()
        self._start()
        self.startup_s = round(time.perf_counter() - t, 1)

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        while self._procs:
            p = self._procs.pop()
            if p.poll() is None:
                procs.stop(p, 10.0)


class Uvicorn(System):
    """The ceiling: the logic as a raw ASGI app, uvicorn with uvloop and httptools, ``workers`` processes."""

    family = "uvicorn"

    def __init__(self, workdir: Path, workers: int = 1) -> None:
        self.name = f"uvicorn-w{workers}"
        super().__init__(workdir)
        self.workers = workers
        self.info = {"mode": "plain Python, no Wasm", "processes": f"{workers} uvicorn worker(s)"}

    def _start(self) -> None:
        self.spawn([sys.executable, "-m", "uvicorn", "bench.http.uvicorn_app:app", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", str(self.workers), "--loop", "uvloop",
                    "--http", "httptools", "--no-access-log", "--log-level", "warning"],
                   "uvicorn", cwd=tools.ROOT)
        self.wait_ready(60)


class WasmtimeServe(System):
    """``wasmtime serve`` with the wasi:http component, precompiled; fresh or reused instances."""

    family = "wasmtime"

    def __init__(self, workdir: Path, reuse: int, cwasm: Path) -> None:
        self.name = "wasmtime-serve-" + ("fresh" if reuse == 1 else "reuse")
        super().__init__(workdir)
        self.reuse = reuse
        self.cwasm = cwasm
        self.info = {"mode": "fresh instance per request" if reuse == 1 else f"instance reuse (≤ {reuse} requests)",
                     "processes": "1 (tokio, threads per core)", "flags": f"--max-instance-reuse-count {reuse}",
                     "version": tools.version(tools.wasmtime())}

    def _start(self) -> None:
        self.spawn([tools.wasmtime(), "serve", "-S", "cli", "--allow-precompiled", "--addr", f"127.0.0.1:{self.port}",
                    "--max-instance-reuse-count", str(self.reuse), str(self.cwasm)], "wasmtime")
        self.wait_ready(120)


class WashDev(System):
    """wasmCloud 2.x ``wash dev`` serving the prebuilt wasi:http component (a fresh instance per request)."""

    family = "wasmcloud"

    def __init__(self, workdir: Path, wasm: Path) -> None:
        self.name = "wash-dev"
        super().__init__(workdir)
        self.wasm = wasm
        self.info = {"mode": "fresh instance per request (wash dev's default)", "processes": "1 (wash)",
                     "version": tools.version(tools.wash())}

    def _start(self) -> None:
        (self.workdir / ".wash").mkdir(exist_ok=True)
        (self.workdir / "order.wasm").write_bytes(self.wasm.read_bytes())
        (self.workdir / ".wash" / "config.yaml").write_text(
            'build:\n  command: "true"\n  component_path: order.wasm\n'
            f"dev:\n  address: 127.0.0.1:{self.port}\n")
        self.spawn([tools.wash(), "dev", "--non-interactive"], "wash-dev", cwd=self.workdir,
                   env={"HOME": str(self.workdir)})  # keeps wash's user config and caches out of ~
        self.wait_ready(300)  # wash dev compiles the 18 MiB component on every start (~30-70 s here)


class WashHost(System):
    """wasmCloud 2.x ``wash host``: NATS, a local OCI registry, a workload started over NATS.

    The component is pushed to Debian's ``docker-registry`` on 127.0.0.1
    (``wash oci push --insecure``); the workload is a
    ``wasmcloud.runtime.v2.WorkloadStartRequest`` as camelCase JSON on
    ``runtime.host.<host_id>.workload.start``; HTTP reaches it by the Host
    header its ``wasi:http`` host interface is configured with. ``pool_size``
    > 0 asks the host to keep that many warm instances.
    """

    family = "wasmcloud"

    def __init__(self, workdir: Path, wasm: Path, pool_size: int = 0, http_version: str = "0.2.0",
                 label: str = "fresh") -> None:
        self.name = f"wash-host-{label}"
        super().__init__(workdir)
        self.wasm = wasm
        self.pool_size = pool_size
        self.http_version = http_version
        self.host_header = f"orders-{label}.bench"
        self.nats: Any = None
        self.host_id = ""
        self.info = {"mode": ("fresh instance per request" if pool_size == 0 else f"poolSize {pool_size}")
                     + f", wasi:http@{http_version}",
                     "processes": "1 (wash host) + nats-server + docker-registry (idle during the load)",
                     "version": tools.version(tools.wash())}

    @property
    def roots(self) -> list[int]:
        # the host and the NATS it is driven by; the registry is idle once the image is pulled
        pids = [p.pid for p in self._procs[-1:] if p.poll() is None]
        if self.nats is not None and self.nats.proc is not None:
            pids.append(self.nats.proc.pid)
        return pids

    def _start(self) -> None:
        from trellis.natsserver import NatsServer

        self.nats = NatsServer(host="127.0.0.1", port=0, store_dir=self.workdir / "nats",
                               log_file=self.workdir / "nats.log")
        self.nats.start()
        reg_port = free_port()
        (self.workdir / "registry.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.workdir / 'registry'}\nhttp:\n  addr: 127.0.0.1:{reg_port}\n")
        self.spawn([tools.docker_registry(), "serve", str(self.workdir / "registry.yml")], "registry")
        image = f"127.0.0.1:{reg_port}/bench/order:0.1.0"
        env = {"HOME": str(self.workdir)}
        deadline = time.monotonic() + 60
        while True:  # until the registry listens
            push = subprocess.run([tools.wash(), "--non-interactive", "oci", "push", "--insecure", image,
                                   str(self.wasm)],
                                  capture_output=True, text=True, timeout=300, env={**os.environ, **env})
            if push.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"wash oci push failed: {(push.stderr or push.stdout)[-600:]}")
            time.sleep(1)
        self.spawn([tools.wash(), "--non-interactive", "host", "--scheduler-nats-url", self.nats.url,
                    "--data-nats-url", self.nats.url, "--http-addr", f"127.0.0.1:{self.port}",
                    "--allow-insecure-registries", "--host-name", self.name], "wash-host", env=env)
        import asyncio

        asyncio.run(self._start_workload(image))
        self.wait_ready(300)  # the host compiles the component after the pull (~30-70 s here)

    async def _start_workload(self, image: str) -> None:
        import asyncio

        import nats

        nc = await nats.connect(self.nats.url)
        try:
            beat: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            async def on_beat(msg: Any) -> None:
                if not beat.done():
                    beat.set_result(msg.subject.rsplit(".", 1)[-1])

            sub = await nc.subscribe("runtime.operator.heartbeat.*", cb=on_beat)
            self.host_id = await asyncio.wait_for(beat, 60)  # the first heartbeat comes at start
            await sub.unsubscribe()
            component: dict[str, Any] = {"name": "order", "image": image, "localResources": {"memoryLimitMb": 512}}
            if self.pool_size:
                component["poolSize"] = self.pool_size
            request = {
                "workloadId": f"order-{self.name}",
                "workload": {
                    "namespace": "bench", "name": "order", "annotations": {},
                    "witWorld": {
                        "components": [component],
                        "hostInterfaces": [{"namespace": "wasi", "package": "http", "version": self.http_version,
                                            "interfaces": ["incoming-handler" if self.http_version.startswith("0.2")
                                                           else "handler"],
                                            "config": {"host": self.host_header}}],
                    },
                },
            }
            reply = await nc.request(f"runtime.host.{self.host_id}.workload.start", json.dumps(request).encode(),
                                     timeout=300)
            answer = json.loads(reply.data)
            self.info["workload_start_reply"] = answer
            state = str(answer.get("workloadStatus", {}).get("workloadState", ""))
            if "ERROR" in state:
                raise RuntimeError(f"{self.name}: workload.start failed: {answer}")
        finally:
            await nc.close()

    def stop(self) -> None:
        super().stop()
        if self.nats is not None:
            self.nats.stop()
            self.nats = None


def env_suffix(env: dict[str, str]) -> str:
    """A system's name suffix for the environment it runs with (``bench.http --ab``): ``@NAME=VALUE``."""
    return "".join(f"@{k}={v}" for k, v in sorted(env.items()))


def twin(system: System, env: dict[str, str]) -> System | None:
    """The same Trellis system with ``env`` added to its host's environment (None for other systems)."""
    if isinstance(system, TrellisSingle):
        return TrellisSingle(system.workdir.parent, system.wasm, system.workers, system.reuse,
                             system.max_instances, {**system.env, **env}, wasi_http=system.wasi_http,
                             lang=system.lang)
    if isinstance(system, TrellisFullApp):
        return TrellisFullApp(system.workdir.parent, system.workers, system.reuse, {**system.env, **env})
    return None


class TrellisSingle(System):
    """Trellis: ``builtin:http-server`` → NATS → ``trellis host --workers W`` running the order component.

    Its own nats-server and host (so CPU and RSS are this system's alone):
    the component started with ``max_instances`` concurrent instances, fresh
    per request (``reuse=1``) or reused (``--reuse N``), the provider on the
    same host, and a link from the provider to the component with config
    ``address=127.0.0.1:PORT``.
    """

    family = "trellis"
    MAX_INSTANCES = 20  # one per connection

    def __init__(self, workdir: Path, wasm: Path, workers: int, reuse: int, max_instances: int | None = None,
                 env: dict[str, str] | None = None, wasi_http: bool = False, lang: str = "") -> None:
        #: the component is the wasi:http proxy one (order-wasi-http), linked as wadm links wasi:http
        self.wasi_http = wasi_http
        #: "" for the Python components, "js" for the JavaScript pair (order-js-trellis, order-js-wasi-http)
        self.lang = lang
        self.name = (f"trellis-{lang + '-' if lang else ''}{'wasi-' if wasi_http else ''}"
                     f"{'fresh' if reuse == 1 else 'reuse'}-w{workers}")
        if max_instances is not None:
            self.MAX_INSTANCES = max_instances
            self.name += f"-i{max_instances}"
        self.max_instances = max_instances
        self.env = dict(env or {})
        self.name += env_suffix(self.env)
        super().__init__(workdir)
        self.wasm = wasm
        self.workers = workers
        self.reuse = reuse
        self.nats: Any = None
        self.host: Any = None
        kind = ("JavaScript " if lang == "js" else "") + ("wasi:http component, " if wasi_http else "")
        self.info = {"mode": kind + (
                         "fresh instance per request" if reuse == 1 else f"instance reuse (--reuse {reuse})"),
                     "processes": f"host + {workers} worker process(es) + http-server provider + nats-server",
                     "workers": workers, "max_instances": self.MAX_INSTANCES}

    @property
    def roots(self) -> list[int]:
        pids = []
        if self.host is not None and self.host.proc.poll() is None:
            pids.append(self.host.proc.pid)  # its workers and the provider are its children
        if self.nats is not None and self.nats.proc is not None:
            pids.append(self.nats.proc.pid)
        return pids

    def _start(self) -> None:
        import asyncio

        from trellis.natsserver import NatsServer

        from .._procs import HostProc, new_lattice

        self.nats = NatsServer(host="127.0.0.1", port=0, store_dir=self.workdir / "nats",
                               log_file=self.workdir / "nats.log")
        self.nats.start()
        lattice = new_lattice()
        state = self.workdir / "state"
        _seed_compile_cache(self.wasm, state / "compiled")
        self.host = HostProc(self.nats.url, lattice, state, self.workers, self.workdir / "host.log",
                             env=self.env).wait_started()
        self.host.wait_workers()
        asyncio.run(self._deploy(lattice))
        self.wait_ready(120)

    async def _deploy(self, lattice: str) -> None:
        from trellis.interfaces.client import LatticeClient
        from trellis.interfaces.links import Link

        async with LatticeClient(self.nats.url, lattice) as c:
            spec: dict[str, Any] = {"reuse": {"max_invocations": self.reuse}} if self.reuse > 1 else {}
            await c.start_component(str(self.wasm), "orders", host_id=self.host.id,
                                    max_instances=self.MAX_INSTANCES, timeout_s=300, **spec)
            await c.start_provider("builtin:http-server", "http-server", host_id=self.host.id)
            await c.put_config("orders-web", {"address": f"127.0.0.1:{self.port}"})
            await c.put_link(Link(source_id="http-server", target="orders", name="web",
                                  wit_namespace="wasi" if self.wasi_http else "trellis", wit_package="http",
                                  interfaces=["incoming-handler"], source_config=["orders-web"]))

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
        super().stop()
        if self.nats is not None:
            self.nats.stop()
            self.nats = None


def _seed_compile_cache(wasm: Path, compiled: Path) -> None:
    """Compile the component once per machine into the bench cache and copy it to a new host's state.

    Like bench/_procs.py does for the test components: hosts then load it in
    milliseconds instead of compiling 18 MiB of Wasm at every start.
    """
    import shutil

    from trellis.host.runtime import CompileCache, load_component, make_engine, wasmtime_patches
    from trellis.host.runtime.engine import EngineSettings

    from .._context import BENCH_CACHE

    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine(EngineSettings(consume_fuel=False))  # the engine workers run components on
    try:
        load_component(engine, wasm.read_bytes(), CompileCache(BENCH_CACHE))
    finally:
        engine.close()
    compiled.mkdir(parents=True, exist_ok=True)
    for art in BENCH_CACHE.glob("*.cwasm"):
        if not (compiled / art.name).exists():
            try:  # a hard link: the bench cache holds GiBs, and every host of a sitting would copy them all
                os.link(art, compiled / art.name)
            except OSError:  # another file system
                shutil.copyfile(art, compiled / art.name)


POC = tools.ROOT / "examples" / "platform-poc"


def platform_poc_landed() -> bool:
    """Whether ``examples/platform-poc`` is committed (work in progress in the tree does not count)."""
    out = subprocess.run(["git", "log", "-1", "--format=%h", "--", "examples/platform-poc/wadm.yaml"],
                         capture_output=True, text=True, cwd=tools.ROOT, timeout=30)
    return bool(out.stdout.strip())


class TrellisFullApp(System):
    """Trellis: the orders application of ``examples/platform-poc`` (wadm.yaml), deployed by wadm.

    Its own nats-server, ``trellis host --workers W`` and ``trellis wadm``; the
    manifest is copied with absolute image paths and the HTTP address moved to
    a free port, deployed with ``trellis app deploy --wait``, and seeded with
    ``GET /data-init/all``. ``POST /orders`` then runs http-controller →
    orders-service → inventory-service → SQL → messaging.
    """

    family = "trellis"
    full_app = True

    def __init__(self, workdir: Path, workers: int, reuse: int = 1, env: dict[str, str] | None = None,
                 max_idle_s: float | None = None) -> None:
        self.name = f"trellis-full-app-{'reuse' if reuse > 1 else 'fresh'}-w{workers}"
        #: with reuse: warm instances idle this long are dropped (``reuse.max_idle_s``; None: kept)
        self.max_idle_s = max_idle_s
        self.env = dict(env or {})
        self.name += env_suffix(self.env)
        super().__init__(workdir)
        self.workers = workers
        self.reuse = reuse
        self.nats: Any = None
        self.host: Any = None
        mode = (f"instance reuse (every component's manifest properties: reuse.max_invocations {reuse})"
                if reuse > 1 else "fresh instance per call (the manifest's default)")
        self.info = {"mode": mode,
                     "processes": "host (+ wadm, idle, in its process unless TRELLIS_UP_WADM_PROCESS=1; + the built-in "
                                  "providers, in its process unless TRELLIS_PROVIDERS_IN_HOST=0) + "
                                  f"{workers} "
                                  "worker process(es) + nats-server",
                     "workers": workers}

    @property
    def roots(self) -> list[int]:
        pids = [p.pid for p in self._procs if p.poll() is None]
        if self.host is not None and self.host.proc.poll() is None:
            pids.append(self.host.proc.pid)
        if self.nats is not None and self.nats.proc is not None:
            pids.append(self.nats.proc.pid)
        return pids

    def _start(self) -> None:
        import re

        from trellis.build import build_tree
        from trellis.natsserver import NatsServer

        from .._procs import HostProc, host_embeds_wadm, new_lattice

        wasms = {p.stem: p for p in build_tree(POC, self.workdir / "build")}
        # GO* variables of its environment reach its nats-server (GOMEMLIMIT=off: as before Trellis set 32MiB)
        self.nats = NatsServer(host="127.0.0.1", port=0, store_dir=self.workdir / "nats",
                               log_file=self.workdir / "nats.log",
                               env={k: v for k, v in self.env.items() if k.startswith("GO")})
        self.nats.start()
        lattice = self.lattice = new_lattice()
        state = self.workdir / "state"
        for wasm in wasms.values():
            _seed_compile_cache(wasm, state / "compiled")
        # the controller in the host's process as `trellis up` runs it (TRELLIS_UP_WADM_PROCESS=1: a process)
        embed = host_embeds_wadm(self.env)
        self.host = HostProc(self.nats.url, lattice, state, self.workers, self.workdir / "host.log",
                             env=self.env, extra_args=["--with-wadm"] if embed else None).wait_started()
        self.host.wait_workers()
        conn = ["--nats-url", self.nats.url, "--lattice", lattice]
        if not embed:
            self.spawn(procs.trellis_argv("wadm", *conn, "--log-level", "warning"), "wadm",
                       env=self.env)  # (an A/B twin's PYTHONPATH runs its wadm too)
        manifest = (POC / "wadm.yaml").read_text()
        idle = f", max_idle_s: {self.max_idle_s:g}" if self.max_idle_s is not None else ""
        manifest = re.sub(r"( *)image: \./build/([\w-]+)\.wasm",
                          lambda m: f"{m.group(1)}image: {wasms[m.group(2)]}" + (
                              f"\n{m.group(1)}reuse: {{max_invocations: {self.reuse}{idle}}}"
                              if self.reuse > 1 else ""),
                          manifest)
        manifest = manifest.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        (self.workdir / "wadm.yaml").write_text(manifest)
        deadline = time.monotonic() + 60  # the controller needs a moment to take the lease
        while subprocess.run(procs.trellis_argv("app", "list", *conn), capture_output=True, timeout=30).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no wadm controller answered within 60 s\n{self.log_tail()}")
            time.sleep(0.5)
        res = subprocess.run(procs.trellis_argv("app", "deploy", str(self.workdir / "wadm.yaml"), "--wait",
                                                "--timeout", "300", *conn),
                             capture_output=True, text=True, timeout=360)
        if res.returncode != 0:
            raise RuntimeError(f"trellis app deploy failed: {(res.stderr or res.stdout)[-800:]}\n{self.log_tail()}")
        deadline = time.monotonic() + 120
        while True:
            try:
                conn_ = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn_.request("GET", "/data-init/all")
                if conn_.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /data-init/all never answered 200\n{self.log_tail()}")
            time.sleep(1)
        self.wait_ready(120)

    def stop(self) -> None:
        super().stop()  # wadm first: it would restart what the host stops
        if self.host is not None:
            self.host.stop()
            self.host = None
        if self.nats is not None:
            self.nats.stop()
            self.nats = None
