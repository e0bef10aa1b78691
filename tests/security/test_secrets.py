"""Secrets, attacked: a member without the grant reads a secret; a secret leaks into an output.

Real parts throughout: nats-server, wadm with its keyholder, hosts with worker
processes, a componentize-py component reading ``wasmcloud:secrets``, a provider
process given its secret on stdin, the `trellis` CLI. Every attack must fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nacl.exceptions
import nats
import nats.errors
import pytest

from tests.components.build import build_python
from tests.harness import HostFactory, eventually
from trellis.interfaces import secrets as sx
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.control import CtlReply
from trellis.interfaces.wadm_client import WadmClient
from trellis.natsserver import NatsServer
from trellis.signing import secrets as sk
from trellis.wadm.controller import Controller, ControllerSettings

PROVIDER = Path(__file__).resolve().parent / "secret_provider.py"


# --- pure parts -------------------------------------------------------------------------------


def test_sealing_signing_and_grants() -> None:
    keyholder, other = sk.NKey.generate(), sk.NKey.generate()
    sealed = sk.seal(keyholder.xkey, b"hunter2")
    assert b"hunter2" not in base64.b64decode(sealed)
    assert keyholder.unseal(sealed) == b"hunter2"
    with pytest.raises(nacl.exceptions.CryptoError):
        other.unseal(sealed)
    grant = sx.Grant(app="a", part="p", kind="component", host="N" + "A" * 55,
                     secrets=(sx.SecretRef(name="db", key="db-pw"),), issued_at=time.time())
    signed = sk.issue_grant(keyholder, grant)
    assert sk.open_grant(signed, frozenset({keyholder.public_key})) == grant
    with pytest.raises(ValueError, match="does not trust"):
        sk.open_grant(signed, frozenset({other.public_key}))
    tampered = signed.model_copy(update={"grant": signed.grant.replace('"p"', '"q"')})
    with pytest.raises(ValueError, match="does not verify"):
        sk.open_grant(tampered, frozenset({keyholder.public_key}))
    value = sx.SecretValue("hunter2")
    assert "hunter2" not in repr(value) and "hunter2" not in str(value) and "hunter2" not in f"{[value]}"


# --- a lattice with a keyholder ---------------------------------------------------------------


class Sniffer:
    """Every message on the NATS server (as a member with full access would see them)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def start(self, url: str) -> None:
        self.nc = await nats.connect(url)

        async def keep(msg: Any) -> None:
            self.messages.append((msg.subject, msg.data))

        await self.nc.subscribe(">", cb=keep)
        await self.nc.flush()

    async def close(self) -> None:
        await self.nc.close()


@pytest.fixture
async def keyholder_lattice(nats_server: NatsServer, lattice: str, hosts: HostFactory,
                            tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    sniffer = Sniffer()
    await sniffer.start(nats_server.url)
    ctl = Controller(ControllerSettings(lattice=lattice, nats=NatsSettings(url=nats_server.url), tick_s=0.5,
                                        lease_ttl_s=2.0, backoff_max_s=2.0,
                                        secrets_key_file=str(tmp_path / "secrets.nk")))
    await ctl.start()
    try:
        yield {"controller": ctl, "sniffer": sniffer, "key_file": tmp_path / "secrets.nk"}
    finally:
        await ctl.close(reason="test teardown")
        await sniffer.close()


async def test_cli_put_list_del_never_print_a_value(keyholder_lattice: dict[str, Any], cli: Any, tmp_path: Path,
                                                   nats_server: NatsServer, lattice: str) -> None:
    planted = "cli-" + uuid.uuid4().hex
    outputs: list[str] = []
    env = {**os.environ, "TRELLIS_NATS_URL": nats_server.url, "TRELLIS_LATTICE": lattice, "COLUMNS": "200"}

    async def run(*args: str, input: str | None = None, ok: bool = True) -> str:
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "trellis.cli.main", *args],
                                       input=input, text=True, capture_output=True, timeout=60, env=env)
        outputs.append(proc.stdout + proc.stderr)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    assert "revision 1" in await run("secret", "put", "from-arg", planted)
    assert "put" in await run("secret", "put", "from-stdin", input=planted + "\n")
    (tmp_path / "value").write_text(planted)
    await run("secret", "put", "from-file", "--from-file", str(tmp_path / "value"))
    listed = json.loads(await run("secret", "list", "-o", "json"))
    assert [s["name"] for s in listed] == ["from-arg", "from-file", "from-stdin"]
    assert all(s["kind"] == "string" for s in listed)
    await run("secret", "list")
    await run("secret", "put", "from-arg", "--from-file", str(tmp_path / "value"), "x", ok=False)
    assert "invalid secret name" in await run("secret", "put", "bad name!", "x", ok=False)
    await run("secret", "del", "from-arg")
    assert "not found" in await run("secret", "del", "from-arg", ok=False)
    assert [s["name"] for s in json.loads(await run("secret", "list", "-o", "json"))] == ["from-file", "from-stdin"]
    # no keyholder in another lattice: one clear line
    other = await asyncio.to_thread(cli, "secret", "list",
                                    env={"TRELLIS_LATTICE": "nokeyholder" + uuid.uuid4().hex[:6]})
    assert other.returncode == 1 and "no secrets keyholder answers" in other.stderr
    for text in outputs:
        assert planted not in text
    # at rest and on the wire: ciphertext only
    for subject, data in keyholder_lattice["sniffer"].messages:
        assert planted.encode() not in data, subject


# --- components and providers -------------------------------------------------------------------


def _manifest(app: str, image: Path, with_grant_on_host: str) -> str:
    return f"""
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
  annotations:
    version: v1
spec:
  policies:
    - name: lattice-secrets
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: nats-kv
  components:
    - name: reader
      type: component
      properties:
        image: {image}
        secrets:
          - name: db-password
            properties:
              policy: lattice-secrets
              key: {app}-db-password
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread:
              - name: granted
                requirements:
                  role: {with_grant_on_host}
    - name: nosy
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: checker
      type: capability
      properties:
        image: {PROVIDER}
        secrets:
          - name: db-password
            properties:
              policy: lattice-secrets
              key: {app}-db-password
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread:
              - name: granted
                requirements:
                  role: {with_grant_on_host}
"""


async def _deploy(nats_url: str, lattice: str, app: str, planted: str, tmp_path: Path) -> WadmClient:
    image = await asyncio.to_thread(build_python, "secretreader")
    async with LatticeClient(nats_url, lattice) as c:
        await sk.put(c, f"{app}-db-password", sx.SecretValue(planted))
        wadm = WadmClient(c)
        await wadm.put(_manifest(app, image, "granted"))
        await wadm.deploy(app)

        async def deployed() -> bool:
            st = await wadm.status(app)
            return st.status.value == "deployed"

        await eventually(deployed, 180, 0.2, what=f"{app} deployed")
    return wadm


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_granted_parts_read_the_secret_and_it_leaks_into_no_output(
        keyholder_lattice: dict[str, Any], hosts: HostFactory, nats_server: NatsServer, lattice: str,
        tmp_path: Path, cli: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level("DEBUG")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # workers and providers write their spans to their logs
    env = {**os.environ, "TRELLIS_NATS_URL": nats_server.url, "TRELLIS_LATTICE": lattice}

    def follow(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.out", "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "trellis.cli.main", *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env)

    events = follow("events", "events", "-o", "json", "--heartbeats")
    spy: subprocess.Popen[bytes] | None = None
    granted = await hosts.start(labels={"role": "granted"})
    other = await hosts.start(labels={"role": "other"})
    planted = "pw-" + uuid.uuid4().hex
    app = "shop" + uuid.uuid4().hex[:6]
    try:
        await _deploy(nats_server.url, lattice, app, planted, tmp_path)
        spy = follow("spy", "spy", f"{app}-reader", "-o", "json", "--count", "3")
        async with LatticeClient(nats_server.url, lattice) as c:
            # the granted component and provider read it; a component without the grant gets not-found
            digest = hashlib.sha256(planted.encode()).hexdigest()  # what they answer: never the value
            assert await c.call(f"{app}-reader", "digest", "db-password", timeout_s=30) == {"ok": digest}
            assert await c.call(f"{app}-reader", "digest", "other") == {"err": "not-found"}
            assert await c.call(f"{app}-nosy", "digest", "db-password") == {"err": "not-found"}
            assert await c.call(f"{app}-checker", "test:secrets/check.digest", "db-password") == digest
            placed = {h.id: [p.id for p in h.components] + [p.id for p in h.providers] for h in await c.get_hosts()}
            assert f"{app}-reader" in placed[granted.id] and f"{app}-checker" in placed[granted.id]
            assert f"{app}-reader" not in placed[other.id]

            async def spied() -> bool:  # the spy joins a moment after it starts: call until it saw three
                assert spy is not None
                if spy.poll() is not None:
                    return True
                await c.call(f"{app}-reader", "digest", "db-password")
                return False

            await eventually(spied, 60, 0.2, what="trellis spy to see three calls")
        # no process (workers, the provider) has it on its command line or in its environment
        import psutil

        children = psutil.Process().children(recursive=True)
        assert any("secret_provider.py" in " ".join(p.cmdline()) for p in children)
        for proc in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                assert planted not in " ".join(proc.cmdline()) and planted not in "".join(proc.environ().values())
    finally:
        for cli_proc in (events, spy):
            if cli_proc is not None and cli_proc.poll() is None:
                cli_proc.terminate()
                cli_proc.wait(10)
    assert "digest" in (tmp_path / "spy.out").read_text()
    assert "component_scaled" in (tmp_path / "events.out").read_text()

    # every output we can collect: CLI outputs, lattice traffic (events, control, RPC, KV), logs
    outputs = [(tmp_path / "spy.out").read_text(), (tmp_path / "events.out").read_text()]
    outputs += [(await asyncio.to_thread(cli, *args)).stdout for args in (
        ("app", "get", app, "-o", "json"), ("app", "status", app, "-o", "json"), ("app", "list", "-o", "json"),
        ("get", "hosts", "-o", "json"), ("get", "links", "-o", "json"), ("config", "list", "-o", "json"),
        ("secret", "list", "-o", "json"), ("get", "inventory", granted.id, "-o", "json"))]
    assert any(app in o for o in outputs)
    sniffed = keyholder_lattice["sniffer"].messages
    assert any(".evt." in s for s, _ in sniffed) and any(".secrets." in s for s, _ in sniffed)
    logs = [p.read_bytes() for p in tmp_path.rglob("*.log")]
    assert logs, "no process logs collected"
    needles = [planted.encode(), base64.b64encode(planted.encode())]
    for needle in needles:
        for text in outputs:
            assert needle.decode() not in text
        for subject, data in sniffed:
            assert needle not in data, f"secret on {subject}"
        for data in logs:
            assert needle not in data
        assert needle.decode() not in caplog.text


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_member_without_the_grant_cannot_read_the_secret(
        keyholder_lattice: dict[str, Any], hosts: HostFactory, nats_server: NatsServer, lattice: str,
        tmp_path: Path) -> None:
    granted = await hosts.start(labels={"role": "granted"})
    planted = "pw-" + uuid.uuid4().hex
    app = "bank" + uuid.uuid4().hex[:6]
    await _deploy(nats_server.url, lattice, app, planted, tmp_path)
    sniffed = keyholder_lattice["sniffer"].messages
    # what a member listening on the lattice saw: the grants wadm sent the granted host
    grants = [sx.SignedGrant.model_validate(json.loads(data)["secrets_grant"]) for s, data in sniffed
              if ".ctl.component." in s or ".ctl.provider." in s if b"secrets_grant" in data]
    assert grants, "no grant seen on the lattice"
    stolen = grants[0]
    assert sk.open_grant(stolen, frozenset({stolen.issuer})).host == granted.id
    requests = [data for s, data in sniffed if s == sx.subject(lattice, sx.Op.GET)]
    assert requests

    rogue = sk.NKey.generate()  # a member with its own host key
    nc = await nats.connect(nats_server.url)
    try:
        async def ask(req: sx.GetSecrets | bytes) -> CtlReply:
            data = req if isinstance(req, bytes) else req.model_dump_json().encode()
            msg = await nc.request(sx.subject(lattice, sx.Op.GET), data, timeout=5)
            return CtlReply.model_validate_json(msg.data)

        xkey = sk.EphemeralXKey()
        # 1. the stolen grant, presented as itself: the grant names another host
        reply = await ask(sk.build_get(rogue._seed_text(), rogue.public_key, stolen, xkey.public))
        assert not reply.success and "another host" in reply.message
        # 2. claiming to be the granted host, but signed with its own key
        forged = sk.build_get(rogue._seed_text(), granted.id, stolen, xkey.public)
        reply = await ask(forged)
        assert not reply.success and "not signed by the host" in reply.message
        # 3. a grant of its own making, naming itself
        own = sx.Grant(app=app, part=f"{app}-reader", kind="component", host=rogue.public_key,
                       secrets=(sx.SecretRef(name="db-password", key=f"{app}-db-password"),), issued_at=time.time())
        reply = await ask(sk.build_get(rogue._seed_text(), rogue.public_key, sk.issue_grant(rogue, own),
                                       xkey.public))
        assert not reply.success and "does not trust" in reply.message
        # 4. the granted host's own request, replayed: answered, but sealed to the host's key, not ours
        reply = await ask(requests[-1])
        if reply.success:
            sealed = reply.response["sealed"]
            assert planted.encode() not in base64.b64decode(sealed)
            with pytest.raises(ValueError):
                xkey.open(sealed)
        # 5. the bucket itself: ciphertext only
        js = nc.jetstream()
        kv = await js.key_value(f"TRELLIS_{lattice}_secrets")
        entry = await kv.get(f"{app}-db-password")
        assert entry.value and planted.encode() not in entry.value
        assert planted.encode() not in base64.b64decode(json.loads(entry.value)["sealed"])
        # 6. a host of the lattice without the grant starts the same component by hand: nothing to read
        async with LatticeClient(nats_server.url, lattice) as c:
            outsider = await hosts.start(labels={"role": "outsider"})
            image = build_python("secretreader")
            await c.start_component(str(image), "by-hand", host_id=outsider.id)
            assert await c.call("by-hand", "digest", "db-password", timeout_s=30) == {"err": "not-found"}
            # 7. a part granted a secret nobody stored does not start, and app status says why
            wadm = WadmClient(c)
            missing = "miss" + uuid.uuid4().hex[:6]
            await wadm.put(_manifest(missing, image, "granted"))
            await wadm.deploy(missing)

            async def explained() -> bool:
                text = (await wadm.status(missing)).model_dump_json()
                return f"secret '{missing}-db-password' is not stored" in text

            await eventually(explained, 120, 0.2, what="app status to name the missing secret")
    finally:
        await nc.close()


# --- NATS permissions: only the keyholder's user reaches the bucket -------------------------------


async def test_with_lattice_permissions_only_the_keyholder_reaches_the_secrets_bucket(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "lattice_permissions", Path(__file__).resolve().parents[2] / "deploy" / "nats" / "lattice_permissions.py")
    assert spec and spec.loader
    perms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perms)
    lattice = "s" + uuid.uuid4().hex[:8]
    var = lattice.upper()
    (tmp_path / "perms.conf").write_text(perms.config(lattice, ("member", "keyholder")))
    conf = tmp_path / "nats.conf"
    conf.write_text(f"""include ./perms.conf
accounts {{
  TRELLIS: {{
    jetstream: enabled
    users: [
      {{ user: member, password: m, permissions: $LATTICE_{var}_MEMBER }}
      {{ user: keyholder, password: k, permissions: $LATTICE_{var}_KEYHOLDER }}
    ]
  }}
}}
""")
    server = NatsServer(port=0, config_file=conf, store_dir=tmp_path / "js", log_file=tmp_path / "nats.log")
    server.start()
    planted = "perm-" + uuid.uuid4().hex
    ctl = Controller(ControllerSettings(lattice=lattice, tick_s=0.5, lease_ttl_s=2.0,
                                        nats=NatsSettings(url=server.url, user="keyholder", password="k"),
                                        secrets_key_file=str(tmp_path / "secrets.nk")))
    try:
        await ctl.start()
        member = NatsSettings(url=server.url, user="member", password="m")
        async with LatticeClient(member, lattice) as c:
            await sk.put(c, "db", sx.SecretValue(planted))  # members put and list through the keyholder
            assert [s.name for s in await sk.list_names(c)] == ["db"]
            js = c.nc.jetstream(timeout=2)
            with pytest.raises(nats.errors.Error):  # but cannot open, read or overwrite the bucket itself
                kv = await js.key_value(f"TRELLIS_{lattice}_secrets")
                await kv.get("db")
            with pytest.raises(nats.errors.Error):
                await js.publish(f"$KV.TRELLIS_{lattice}_secrets.db", b"replaced", timeout=2)
        violations = [line for line in (tmp_path / "nats.log").read_text().splitlines() if "Violation" in line]
        assert violations and all('user:member"' in v and "_secrets" in v for v in violations), violations
    finally:
        await ctl.close(reason="test teardown")
        server.stop()


def test_a_part_whose_grant_changes_is_restarted_not_updated_in_place() -> None:
    """A new manifest version that takes a secret away (or adds one) replaces the running part:
    an update in place would keep the grant, and the value, it was started with."""
    from trellis.wadm.commands import StopComponent
    from trellis.wadm.manifest import Spread
    from trellis.wadm.observed import SECRETS_ANNOTATION, ObservedHost
    from trellis.wadm.scaler.placement import Slot, _replace, desired_annotations, is_fresh
    from trellis.wadm.scaler.workload import ReconcilePass, Workload

    ref = sx.SecretRef(name="db-password", key="shop-db")
    with_grant = Workload(name="api", id="shop-api", kind="component", image="api.wasm", config=(),
                          scaler="spreadscaler", instances=1, spreads=(Spread(name="default"),), secrets=(ref,))
    without = Workload(name="api", id="shop-api", kind="component", image="api.wasm", config=(),
                       scaler="spreadscaler", instances=1, spreads=(Spread(name="default"),))
    tags = desired_annotations(ReconcilePass(app="shop", version="v1"), with_grant, "default")
    assert tags[SECRETS_ANNOTATION] == "db-password=shop-db"
    assert SECRETS_ANNOTATION not in desired_annotations(ReconcilePass(app="shop", version="v1"), without, "default")
    slot = Slot(host=ObservedHost(id="NHOST"), count=1, image="api.wasm", annotations=tags)
    assert is_fresh(with_grant, slot)
    assert not is_fresh(without, slot)
    assert isinstance(_replace(without, slot, ReconcilePass(app="shop", version="v2"), "default"), StopComponent)
