"""NATS permissions that confine users to one lattice (deploy/nats/lattice_permissions.py).

A server with the generated permission blocks: a host, its worker and provider, a
controller and an operator run lattice ``a`` as *members* of it and trip no permission
(every JetStream call Trellis makes is allowed, nothing else is needed); a *caller*
of ``a`` can call components but not control hosts; a member of lattice ``b`` sees
nothing of ``a``. Every denial is also checked in the server's log.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControllerProcess
from trellis.interfaces.artifacts import push
from trellis.interfaces.client import ControlError, LatticeClient
from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore, StoreSettings
from trellis.interfaces.wadm_client import WadmClient
from trellis.natsserver import NatsServer

from ..harness import HostProcess
from .apps import spread_app, until

pytestmark = pytest.mark.timeout(180)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "lattice_permissions.py"
ECHO = str(Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py")
_VIOLATION = re.compile(r'"\w+/user:(\w+)" - (?:Publish|Subscription) Violation')


def _permissions_module():
    spec = importlib.util.spec_from_file_location("lattice_permissions", DEPLOY)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lattice_confined_users(tmp_path, wasm):
    perms = _permissions_module()
    a, b = "a" + uuid.uuid4().hex[:8], "b" + uuid.uuid4().hex[:8]
    A, B = a.upper(), b.upper()
    (tmp_path / "perms.conf").write_text(perms.config(a) + perms.config(b, ("member",)))
    conf = tmp_path / "nats.conf"
    conf.write_text(f"""\
include ./perms.conf
accounts {{
  TRELLIS: {{
    jetstream: enabled
    users: [
      {{ user: member, password: m, permissions: $LATTICE_{A}_MEMBER }}
      {{ user: caller, password: c, permissions: $LATTICE_{A}_CALLER }}
      {{ user: other, password: o, permissions: $LATTICE_{B}_MEMBER }}
    ]
  }}
}}
""")
    log = tmp_path / "nats.log"
    server = NatsServer(port=0, config_file=conf, store_dir=tmp_path / "js", log_file=log)
    server.start()
    member_env = {"TRELLIS_NATS_USER": "member", "TRELLIS_NATS_PASSWORD": "m"}
    host = HostProcess(server.url, a, "--workers", "1", "--state-dir", str(tmp_path / "h"),
                       log=tmp_path / "host.log", env=member_env)
    wadm = None
    try:
        host.wait_started()
        wadm = ControllerProcess(None, server.url, a, tmp_path / "wadm.log",
                                 {**os.environ, **member_env}).wait_started()

        def as_(user: str, password: str) -> NatsSettings:
            return NatsSettings(url=server.url, user=user, password=password)

        async def scenario() -> dict:
            async with LatticeClient(as_("member", "m"), a) as c:
                ref = await push(c.connection, a, wasm["adder"].read_bytes())
                await c.start_component(ref, "calc", host_id=host.id)
                await c.start_provider(ECHO, "echo", host_id=host.id)
                store = LatticeStore(c.connection, a)
                await store.put_link(Link(source_id="calc", target="echo", wit_namespace="test",
                                          wit_package="echo", interfaces=["echo"]))
                await store.put_config("calc-cfg", {"k": "v"})
                w = WadmClient(c)
                await w.put(spread_app("app", ref, 2))
                await w.deploy("app")
                await until(lambda: _deployed(w), 60, "app deployed")
                member = {"calc": await c.call("calc", "add", 1, 2),
                          "app": await c.call("app-svc", "add", 2, 2),
                          "echo": await c.call("echo", "test:echo/echo.echo", "hi"),
                          "links": len(await store.list_links())}
            async with LatticeClient(as_("caller", "c"), a, timeout_s=1) as c:
                caller: dict[str, Any] = {"call": await c.call("calc", "add", 3, 4)}
                try:
                    await c.get_inventory(host.id)
                    caller["control"] = "allowed"
                except ControlError as exc:
                    caller["control"] = f"denied ({exc.code})"
            async with LatticeClient(as_("other", "o"), b, timeout_s=1) as c:
                other: dict[str, Any] = {"hosts_seen": len(await c.get_hosts(timeout_s=0.5))}
                try:
                    await LatticeStore(c.connection, a, settings=StoreSettings(timeout_s=1)).list_links()
                    other["a_links"] = "readable"
                except Exception as exc:
                    other["a_links"] = f"denied ({exc.__class__.__name__})"
                try:
                    c.lattice = a  # speak to lattice a's subjects directly
                    await c.get_inventory(host.id)
                    other["a_control"] = "allowed"
                except ControlError as exc:
                    other["a_control"] = f"denied ({exc.code})"
            return {"member": member, "caller": caller, "other": other}

        result = asyncio.run(scenario())
    finally:
        if wadm is not None:
            wadm.stop()
        host.stop()
        server.stop()
    violations: dict[str, int] = {}
    for user, n in ((m.group(1), 1) for m in _VIOLATION.finditer(log.read_text())):
        violations[user] = violations.get(user, 0) + n
    assert result["member"] == {"calc": 3, "app": 4, "echo": "hi", "links": 1}, result
    assert result["caller"]["call"] == 7 and result["caller"]["control"] != "allowed", result
    assert result["other"]["hosts_seen"] == 0, result
    assert result["other"]["a_links"] != "readable" and result["other"]["a_control"] != "allowed", result
    # members of lattice a never hit a wall; the denials are the caller's and the outsider's
    assert "member" not in violations, (violations, log.read_text()[-3000:])
    assert {"caller", "other"} <= set(violations), violations


async def _deployed(w: WadmClient) -> bool:
    return (await w.status("app")).status == "deployed"
