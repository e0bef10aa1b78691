"""The orders application (examples/platform-poc) on a real `trellis up`, deployed from its manifests.

`render_manifest` takes a committed manifest and changes only what a test must:
where the images are, the HTTP port, and where the databases are. `TrellisUp`
runs the real `trellis up` (nats-server, a host, the wadm controller) in a
state directory of its own, on a free NATS port, and talks to it with the real
CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import COMPILE_CACHE, REPO, run_cli
from trellis.kit import procs

EXAMPLE = REPO / "examples" / "platform-poc"
APP = "platform-poc"
COMPONENTS = ("http-controller", "products-service", "inventory-service", "orders-service",
              "notification-service", "data-init")
#: the host compiles each component on its first start (~10 s each, far more on a busy machine)
DEPLOY_TIMEOUT_S = 540.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_manifest(source: Path, target: Path, *, wasm_dir: Path | None, http_port: int,
                    provider_config: dict[str, dict[str, str]]) -> Path:
    """``source`` with HTTP on ``http_port``, providers' config values replaced and, given
    ``wasm_dir``, the images there (else they stay ``./build/NAME.wasm``)."""
    doc = yaml.safe_load(source.read_text())
    changed: set[str] = set()
    for comp in doc["spec"]["components"]:
        props = comp["properties"]
        if wasm_dir is not None and props["image"].startswith("./build/"):
            props["image"] = str(wasm_dir / Path(props["image"]).name)
        if comp["name"] in provider_config:
            (entry,) = props["config"]
            entry["properties"].update(provider_config[comp["name"]])
            changed.add(comp["name"])
        for trait in comp.get("traits", []):
            link = trait["properties"]
            if trait["type"] == "link" and (link["namespace"], link["package"]) == ("trellis", "http"):
                (entry,) = link["source"]["config"]
                assert entry["properties"]["address"] == "127.0.0.1:8080", "the manifest serves on 8080"
                entry["properties"]["address"] = f"127.0.0.1:{http_port}"
    assert changed == set(provider_config), f"no providers named {sorted(set(provider_config) - changed)}"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


class TrellisUp:
    """A real `trellis up` in ``root``; with ``deploy``, started as `trellis up --deploy MANIFEST`."""

    def __init__(self, root: Path, *, deploy: Path | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir(parents=True)
        # compiled code is keyed by digest and wasmtime version: share the test hosts' cache
        COMPILE_CACHE.mkdir(parents=True, exist_ok=True)
        (self.state / "compiled").symlink_to(COMPILE_CACHE, target_is_directory=True)
        self.nats_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.log = root / "up.log"
        argv = procs.trellis_argv("up", "--state-dir", str(self.state), "--nats-port", str(self.nats_port),
                                  "--lattice", "default", *args)
        if deploy is not None:
            argv += ["--deploy", str(deploy)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, **(env or {})})

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, timeout=timeout,
                       env={"TRELLIS_NATS_URL": self.nats_url, "TRELLIS_LATTICE": "default"})

    def logs(self) -> str:
        """Everything `trellis up` and its children logged so far (for failure messages)."""
        parts = [self.log.read_text(errors="replace")[-6000:]] if self.log.exists() else []
        for f in sorted((self.state / "logs").glob("*.log")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def component_logs(self) -> str:
        """What the components logged (the host's worker processes)."""
        return "\n".join(f.read_text(errors="replace") for f in sorted((self.state / "logs").glob("worker-*.log")))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until wadm answers (it is the last of `trellis up`'s children to be useful)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            if self.cli("app", "list", "-o", "json", timeout=30).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"trellis up did not become ready in {timeout}s:\n{self.logs()}")

    def deploy(self, manifest: Path) -> None:
        """`trellis app deploy MANIFEST --wait`, as a person would."""
        r = self.cli("app", "deploy", str(manifest), "--wait", "--timeout", str(DEPLOY_TIMEOUT_S),
                     timeout=DEPLOY_TIMEOUT_S + 30)
        assert r.returncode == 0, f"deploy failed:\n{r.stdout}\n{r.stderr}\n{self.logs()}"

    def status(self) -> dict[str, Any]:
        r = self.cli("app", "status", APP, "-o", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_deployed(self, timeout: float = DEPLOY_TIMEOUT_S) -> None:
        """Until the app's status is deployed (for `trellis up --deploy`, which deploys by itself)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_running()
            r = self.cli("app", "status", APP, "-o", "json")
            if r.returncode == 0:
                last = json.loads(r.stdout)
                if last.get("status") == "deployed":
                    return
            time.sleep(1.0)
        raise AssertionError(f"{APP} not deployed after {timeout}s; last status {last}\n{self.logs()}")

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"trellis up exited with {self.proc.returncode}:\n{self.logs()}")

    def stop(self) -> None:
        code = procs.stop(self.proc, 60.0)
        assert code == 0, f"trellis up exited with {code}:\n{self.logs()}"


def copy_example(target: Path) -> Path:
    """The example's sources (not its build/ folder) in ``target``."""
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("build", "__pycache__", ".*"))
    return target


def wait_http(base_url: str, timeout: float = 60.0) -> None:
    """Until something answers HTTP at ``base_url`` (the front opens its port once it has the link)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(base_url + "/", timeout=5.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answers HTTP at {base_url} after {timeout}s")

