"""Attacks on signed artifacts: a host started with trusted issuers must run nothing else.

Each attack goes through the real `trellis` command line (sign, push, start, app status)
against real hosts; the component is the hand-written `adder` (built in ~50 ms).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.components.build import build_wat
from tests.wadm_e2e.conftest import Controllers
from tests.wadm_e2e.helpers import component_app, wait_status
from trellis.interfaces.client import ControlError, LatticeClient
from trellis.signing import IssuerKey, read_wasm_claims, sign_wasm, strip_signature
from trellis.signing.pyfile import MARKER

from ..harness import HostProcess

ECHO_PROVIDER = Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py"


@pytest.fixture(scope="module")
def adder() -> Path:
    return build_wat("adder")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two issuers: `ours` (trusted by the hosts) and `theirs`."""
    tmp = tmp_path_factory.mktemp("keys")
    out: dict[str, object] = {}
    for who in ("ours", "theirs"):
        path = tmp / f"{who}.nk"
        out[who] = path
        out[who + "_pub"] = IssuerKey.create(path).public_key
    return out


async def _run(cli, *args: str):
    return await asyncio.to_thread(cli, *args)


def test_signature_is_wascap_format_and_covers_the_content(adder: Path, tmp_path: Path, cli) -> None:
    key_file = tmp_path / "issuer.nk"
    out = cli("sign", str(adder), "-o", str(tmp_path / "signed.wasm"), "--new-issuer-key", str(key_file),
              "--name", "adder", "--ver", "1.2.0")
    assert out.returncode == 0, out.stderr
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    printed = cli("sign", "--public-key", str(key_file))
    assert printed.returncode == 0 and printed.stdout.strip() == IssuerKey.load(key_file).public_key
    again = cli("sign", str(adder), "-o", str(tmp_path / "x.wasm"), "--new-issuer-key", str(key_file))
    assert again.returncode != 0 and "already exists" in again.stderr  # a key is never overwritten
    signed = (tmp_path / "signed.wasm").read_bytes()
    # still a valid component for another tool, carrying wasmCloud's section
    subprocess.run(["wasm-tools", "validate", str(tmp_path / "signed.wasm")], check=True)
    printed = subprocess.run(["wasm-tools", "print", str(tmp_path / "signed.wasm")], check=True,
                             capture_output=True, text=True).stdout
    assert '(@custom "wasmcloud_jwt"' in printed
    # stripping the signature gives back the original bytes; the hash is of those bytes
    original = adder.read_bytes()
    assert strip_signature(signed) == original
    claims = read_wasm_claims(signed)
    assert claims is not None and claims.name == "adder" and claims.ver == "1.2.0"
    import hashlib
    assert claims.hash == hashlib.sha256(original).hexdigest().upper() and claims.subject.startswith("M")
    inspected = cli("sign", "--inspect", str(tmp_path / "signed.wasm"))
    assert json.loads(inspected.stdout)["issuer"] == claims.issuer
    # signing again (another issuer) replaces the signature instead of stacking a second one
    other = IssuerKey.generate()
    resigned = sign_wasm(signed, other)
    assert strip_signature(resigned) == original and read_wasm_claims(resigned).issuer == other.public_key
    # bad input: one line, no traceback
    bad = cli("sign", str(ECHO_PROVIDER.with_name("__init__.py")), "-o", str(tmp_path / "x"))
    assert bad.returncode != 0 and "--issuer-key" in bad.stderr and "Traceback" not in bad.stderr
    wrong = cli("sign", str(adder), "-o", str(tmp_path / "x.wasm"), "--issuer-key", str(adder))
    assert wrong.returncode != 0 and "not an nkeys seed" in wrong.stderr


async def test_unsigned_foreign_and_tampered_components_do_not_start(nats_server, lattice, hosts, cli, keys, adder,
                                                                     tmp_path):
    h = await hosts.start(trusted_issuers=(keys["ours_pub"],))
    unsigned = tmp_path / "unsigned.wasm"
    shutil.copy(adder, unsigned)
    foreign = tmp_path / "foreign.wasm"
    out = await _run(cli, "sign", str(adder), "-o", str(foreign), "--issuer-key", str(keys["theirs"]))
    assert out.returncode == 0, out.stderr
    # tampered: our signature (a valid JWT by the trusted issuer) moved onto other code, then
    # pushed to the lattice so its digest is right for what it holds
    ours = sign_wasm(adder.read_bytes(), IssuerKey.load(keys["ours"]))
    token_section = ours[len(adder.read_bytes()):]
    other_code = build_wat("tail").read_bytes()
    tampered = tmp_path / "tampered.wasm"
    tampered.write_bytes(other_code + token_section)
    pushed = await _run(cli, "push", str(tampered))
    assert pushed.returncode == 0, pushed.stderr
    tampered_ref = pushed.stdout.strip()
    assert tampered_ref.startswith("lattice://sha256:")

    for cid, ref, reason in [
        ("unsigned", str(unsigned), "is not signed"),
        ("foreign", str(foreign), f"is signed by issuer {keys['theirs_pub']}, which this host does not trust"),
        ("tampered", tampered_ref, "was changed after"),
    ]:
        out = await _run(cli, "start", "component", ref, cid, "--host-id", h.id, "--wait-timeout", "30")
        assert out.returncode != 0, f"{cid} started: {out.stdout}"
        assert reason in out.stderr and len(out.stderr.strip().splitlines()) <= 2, out.stderr
    async with LatticeClient(nats_server.url, lattice) as c:
        assert (await c.get_inventory(h.id)).components == []

    # the same component signed by the trusted issuer on the way into the lattice runs
    pushed = await _run(cli, "push", str(adder), "--issuer-key", str(keys["ours"]))
    assert pushed.returncode == 0, pushed.stderr
    out = await _run(cli, "start", "component", pushed.stdout.strip(), "good", "--host-id", h.id)
    assert out.returncode == 0, out.stderr
    async with LatticeClient(nats_server.url, lattice) as c:
        assert await c.call("good", "add", 2, 3) == 5
        [desc] = (await c.get_inventory(h.id)).components
        assert desc.issuer == keys["ours_pub"]


async def test_app_status_says_why_an_unsigned_component_is_refused(nats_server, lattice, hosts, cli, keys, adder,
                                                                    tmp_path):
    await hosts.start(trusted_issuers=(keys["ours_pub"],))
    controllers = Controllers(nats_server.url, lattice)
    try:
        await controllers.start()
        shutil.copy(adder, tmp_path / "adder.wasm")
        manifest = tmp_path / "app.yaml"
        manifest.write_text(component_app("shop", "./adder.wasm", instances=1))
        out = await _run(cli, "app", "deploy", str(manifest))
        assert out.returncode == 0, out.stderr
        from trellis.interfaces.wadm_client import WadmClient
        async with LatticeClient(nats_server.url, lattice) as c:
            await wait_status(WadmClient(c), "shop", "failed")
        out = await _run(cli, "app", "status", "shop", "-o", "json")
        st = json.loads(out.stdout)
        [comp] = st["components"]
        assert comp["running"] == 0 and "is not signed" in comp["message"], comp
        assert "\n" not in comp["message"]

        # signed by the trusted issuer, the next version deploys
        await _run(cli, "sign", str(adder), "-o", str(tmp_path / "adder.wasm"), "--issuer-key", str(keys["ours"]))
        manifest.write_text(component_app("shop", "./adder.wasm", instances=1, version="v2"))
        out = await _run(cli, "app", "deploy", str(manifest), "--wait")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        await controllers.close()


async def test_provider_files_signed_unsigned_tampered_and_python_modules(nats_server, lattice, hosts, cli, keys,
                                                                          tmp_path):
    h = await hosts.start(trusted_issuers=(keys["ours_pub"],), allow_python_providers=("http.server",))
    signed = tmp_path / "echo_signed.py"
    out = await _run(cli, "sign", str(ECHO_PROVIDER), "-o", str(signed), "--issuer-key", str(keys["ours"]))
    assert out.returncode == 0, out.stderr
    assert signed.read_bytes().splitlines()[-1].startswith(MARKER)
    tampered = tmp_path / "echo_tampered.py"
    tampered.write_bytes(signed.read_bytes().replace(b"return text", b"return text.upper()"))
    moved = tmp_path / "echo_moved.py"  # code added after the signature line
    moved.write_bytes(signed.read_bytes() + b"import os; os.system('id')\n")

    async with LatticeClient(nats_server.url, lattice) as c:
        for pid, ref, reason in [
            ("unsigned", str(ECHO_PROVIDER), "is not signed"),
            ("tampered", str(tampered), "was changed after"),
            ("moved", str(moved), "not its last line"),
            ("module", "python:http.server", "cannot be signed"),
            ("module2", "python:json.tool", "does not allow it"),
        ]:
            with pytest.raises(ControlError) as e:
                await c.start_provider(ref, pid, host_id=h.id)
            assert reason in e.value.message, e.value.message
        assert (await c.get_inventory(h.id)).providers == []
        await c.start_provider(str(signed), "echo", host_id=h.id)
        assert await c.call("echo", "test:echo/echo.echo", "hi") == "hi"
        await c.stop_provider("echo")


def test_trusted_issuers_from_the_environment(nats_server, lattice, keys, adder, tmp_path, cli) -> None:
    """`trellis host` reads TRELLIS_TRUSTED_ISSUERS (comma separated) and refuses a bad key at start."""
    bad = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "bad"), "--workers", "1",
                      env={"TRELLIS_TRUSTED_ISSUERS": "NOTAKEY"}, log=tmp_path / "bad.log")
    assert bad.wait(30) != 0
    bad_log = (tmp_path / "bad.log").read_text()
    assert "--trusted-issuer" in bad_log and "not an nkeys public key" in bad_log

    host = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "h"), "--workers", "1",
                       env={"TRELLIS_TRUSTED_ISSUERS": f"{keys['theirs_pub']},{keys['ours_pub']}"},
                       log=tmp_path / "h.log").wait_started()
    try:
        out = cli("start", "component", str(adder), "plain", "--host-id", host.id, "--wait-timeout", "30")
        assert out.returncode != 0 and "is not signed" in out.stderr
        cli("sign", str(adder), "-o", str(tmp_path / "a.wasm"), "--issuer-key", str(keys["ours"]))
        out = cli("start", "component", str(tmp_path / "a.wasm"), "signed", "--host-id", host.id)
        assert out.returncode == 0, out.stderr
    finally:
        host.stop()


def test_forged_expired_and_malformed_signatures_are_refused(adder: Path) -> None:
    """Signatures that do not hold, checked without a lattice (each a one-line reason)."""
    import base64

    from trellis.signing import SignatureError, Trust
    from trellis.signing.wasm import WRITE_SECTION, _enc_leb

    key = IssuerKey.generate()
    trust = Trust((key.public_key,))
    original = adder.read_bytes()

    def with_token(token: str) -> bytes:
        name = WRITE_SECTION.encode()
        content = _enc_leb(len(name)) + name + token.encode()
        return original + b"\x00" + _enc_leb(len(content)) + content

    def refused(data: bytes) -> str:
        with pytest.raises(SignatureError) as e:
            trust.check_component(data, "component x")
        assert "\n" not in e.value.message
        return e.value.message

    good = sign_wasm(original, key)
    token = good[len(original):].split(WRITE_SECTION.encode(), 1)[1].decode()
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    # claims edited after signing (say, to name a trusted issuer's hash for other code): the signature breaks
    claims["wascap"]["name"] = "something-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert "does not verify" in refused(with_token(f"{head}.{forged}.{sig}"))
    # a signature made by another key but naming the trusted issuer
    other = IssuerKey.generate()
    stolen = sign_wasm(original, other)
    t2 = stolen[len(original):].split(WRITE_SECTION.encode(), 1)[1].decode()
    h2, b2, s2 = t2.split(".")
    c2 = json.loads(base64.urlsafe_b64decode(b2 + "=" * (-len(b2) % 4)))
    c2["iss"] = key.public_key
    b2 = base64.urlsafe_b64encode(json.dumps(c2).encode()).decode().rstrip("=")
    assert "does not verify" in refused(with_token(f"{h2}.{b2}.{s2}"))
    # expired, and not a JWT at all
    assert "expired" in refused(sign_wasm(original, key, expires_in_days=-1))
    assert "not a JWT" in refused(with_token("garbage"))
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    assert "not Ed25519" in refused(with_token(f"{none_header}.{body}."))
    # still good: the untouched signature
    assert trust.check_component(good, "component x").issuer == key.public_key


async def test_provider_folders_signed_and_tampered(nats_server, lattice, hosts, cli, keys, tmp_path):
    """A provider folder (a package run as `python -m NAME`) carries TRELLIS-SIGNATURE.jwt over its listing."""
    src = tmp_path / "src" / "echo_pkg"
    src.mkdir(parents=True)
    (src / "__main__.py").write_bytes(ECHO_PROVIDER.read_bytes())
    signed = tmp_path / "dist" / "echo_pkg"
    out = await _run(cli, "sign", str(src), "-o", str(signed), "--issuer-key", str(keys["ours"]))
    assert out.returncode == 0, out.stderr
    extra = tmp_path / "extra" / "echo_pkg"  # a file slipped in after signing
    shutil.copytree(signed, extra)
    (extra / "sitecustomize.py").write_text("import os\n")
    edited = tmp_path / "edited" / "echo_pkg"
    shutil.copytree(signed, edited)
    (edited / "__main__.py").write_text((edited / "__main__.py").read_text().replace("return text", "return 'x'"))

    h = await hosts.start(trusted_issuers=(keys["ours_pub"],))
    async with LatticeClient(nats_server.url, lattice) as c:
        for pid, ref, reason in [("plain", src, "is not signed"), ("extra", extra, "was changed after"),
                                 ("edited", edited, "was changed after")]:
            with pytest.raises(ControlError) as e:
                await c.start_provider(str(ref), pid, host_id=h.id)
            assert reason in e.value.message, e.value.message
        await c.start_provider(str(signed), "echo", host_id=h.id)
        assert await c.call("echo", "test:echo/echo.echo", "hi") == "hi"
        await c.stop_provider("echo")
