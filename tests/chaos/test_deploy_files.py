"""The files in deploy/ stay true: configs nats-server accepts, variables Trellis reads.

No cluster is started here (the chaos scenarios do that); these checks catch a
deploy file drifting from the code: a permission file not regenerated, a NATS config
that no longer parses, an environment variable or flag that no longer exists.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from trellis.natsserver import find_binary

from ..harness import run_cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRETS = {"TRELLIS_MEMBER_PASSWORD": "x", "TRELLIS_CALLER_PASSWORD": "y", "NATS_SYS_PASSWORD": "z"}


def _nats_config_ok(conf: Path, **env: str) -> None:
    r = subprocess.run([find_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **SECRETS, **env})
    assert r.returncode == 0, r.stderr + r.stdout


def _permissions():
    spec = importlib.util.spec_from_file_location("lattice_permissions", DEPLOY / "nats" / "lattice_permissions.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_nats_config_and_generated_permissions():
    perms = _permissions()
    assert (DEPLOY / "nats" / "lattice-default.conf").read_text() == perms.config("default"), \
        "regenerate: python3 deploy/nats/lattice_permissions.py default > deploy/nats/lattice-default.conf"
    _nats_config_ok(DEPLOY / "nats" / "nats-server.conf", NATS_SERVER_NAME="nats-1")


def test_kubernetes_manifests(tmp_path):
    docs = {}
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[(d["kind"], d["metadata"]["name"] if "metadata" in d else f.name)] = d
    kinds = {k for k, _ in docs}
    assert {"StatefulSet", "DaemonSet", "Deployment", "Service", "ConfigMap", "Secret"} <= kinds
    nats = docs[("StatefulSet", "nats")]
    assert nats["spec"]["replicas"] == 3
    assert docs[("Deployment", "trellis-wadm")]["spec"]["replicas"] == 2
    for name, text in docs[("ConfigMap", "nats-config")]["data"].items():
        (tmp_path / name).write_text(text)
    assert (tmp_path / "lattice-default.conf").read_text() == _permissions().config("default")
    _nats_config_ok(tmp_path / "nats-server.conf", POD_NAME="nats-0")
    config = docs[("ConfigMap", "trellis-config")]["data"]
    assert config["TRELLIS_KV_REPLICAS"] == "3"
    assert len(config["TRELLIS_NATS_URL"].split(",")) == 3


def test_compose_file():
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nats-1", "nats-2", "nats-3", "host-1", "host-2", "host-3", "wadm-1", "wadm-2"} <= set(services)
    for name, svc in services.items():
        if name.startswith(("host-", "wadm-")):
            assert svc["environment"]["TRELLIS_KV_REPLICAS"] == "3", name
            assert svc["command"][0] in ("host", "wadm"), name


def _env_names_read_by_code() -> set[str]:
    names: set[str] = set()
    for pkg in ("interfaces", "host", "wadm", "trellis", "providers"):
        for f in (REPO / pkg).rglob("*.py"):
            names |= set(re.findall(r"\b(TRELLIS_[A-Z_]+)\b", f.read_text()))
    return names


def test_systemd_units_and_environment():
    known = _env_names_read_by_code()
    for example in ("trellis.env.example", "nats.env.example"):
        for line in (DEPLOY / "systemd" / example).read_text().splitlines():
            key = line.split("=", 1)[0].lstrip("# ").strip()
            if line.startswith("TRELLIS_") or (line.startswith("# ") and key.startswith("TRELLIS_NATS")):
                assert key in known or key in SECRETS, f"{example}: {key} is read by nothing"
    flags = {"host": run_cli("host", "--help").stdout, "wadm": run_cli("wadm", "--help").stdout}
    for unit in ("trellis-host.service", "trellis-wadm.service", "trellis-nats.service"):
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.read(DEPLOY / "systemd" / unit)
        start = cp["Service"]["ExecStart"].split()
        assert cp["Service"]["Restart"] == "always", unit
        if "trellis" in start[0]:
            command = start[1]
            for arg in start[2:]:
                if arg.startswith("--"):
                    assert arg in flags[command], f"{unit}: {arg} is not a flag of 'trellis {command}'"


@pytest.mark.parametrize("lattice", ["prod", "team-a_2"])
def test_permission_generator_cli(lattice):
    out = subprocess.run(["python3", str(DEPLOY / "nats" / "lattice_permissions.py"), lattice, "--roles", "caller"],
                         capture_output=True, text=True, check=True).stdout
    var = re.sub(r"[^A-Za-z0-9]", "_", lattice).upper()
    assert f"LATTICE_{var}_CALLER" in out and "MEMBER" not in out
    assert f'"trellis.{lattice}.rpc.>"' in out
