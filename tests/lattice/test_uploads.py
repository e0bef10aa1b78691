"""A manifest's local files are uploaded once, content-addressed; provider folders pack the same way every time."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile

import nats
import pytest

from tests.components.build import build_wat
from tests.harness import REPO
from trellis.host.provider_refs import prepared_command, provider_command
from trellis.interfaces.artifacts import fetch_lattice, sha256_digest
from trellis.interfaces.provider_package import PackageError, pack_folder, unpack
from trellis.uploads import UploadError, upload_local_files

KV_MEMORY = REPO / "examples" / "custom-provider" / "kv_memory"
MANIFEST = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: up}
spec:
  components:
    - {name: adder, type: component, properties: {image: ./adder.wasm}}
    - {name: twin, type: component, properties: {image: ./adder.wasm, id: twin}}
    - {name: prov, type: capability, properties: {image: ./prov.py, id: prov}}
    - {name: kv, type: capability, properties: {image: ./kv_memory, id: kv}}
    - {name: builtin, type: capability, properties: {image: "builtin:keyvalue-nats"}}
    - {name: far, type: component, properties: {image: /nowhere/far.wasm}}
"""


def test_a_folder_packs_the_same_way_every_time_and_unpacks_to_a_runnable_module(tmp_path):
    a = tmp_path / "a" / "kv_memory"
    shutil.copytree(KV_MEMORY, a)
    first = pack_folder(a)
    (a / "__pycache__").mkdir(exist_ok=True)
    (a / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    os.utime(a / "__init__.py", (1, 1))  # times do not count
    assert pack_folder(a) == first
    (a / "extra.py").write_text("X = 1\n")
    assert pack_folder(a) != first

    prepared = unpack(first, "d1", tmp_path / "cache")
    cmd = prepared_command(prepared)
    assert cmd.argv[-2:] == ["-m", "kv_memory"] and cmd.pythonpath == [str(tmp_path / "cache" / "d1")]
    cached = tmp_path / "cache" / "d1" / "kv_memory" / "__main__.py"
    assert cached.read_bytes() == (KV_MEMORY / "__main__.py").read_bytes()
    assert unpack(first, "d1", tmp_path / "cache") == prepared  # unpacked once, then reused

    script = unpack(b"print('hi')\n", "d2", tmp_path / "cache")
    assert script.argv_tail == [str(tmp_path / "cache" / "d2" / "provider.py")]

    (tmp_path / "nomain").mkdir()
    with pytest.raises(PackageError, match="no __main__.py"):
        pack_folder(tmp_path / "nomain")

    # a package is only ever unpacked inside its folder
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        evil = tarfile.TarInfo("../escaped.py")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    with pytest.raises(PackageError, match="not a plain file or folder inside it"):
        unpack(gzip.compress(raw.getvalue()), "d3", tmp_path / "cache")
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path / "cache" / "d3").exists()


def test_a_host_runs_a_local_provider_folder_and_names_itself_for_a_missing_path(tmp_path):
    cmd = provider_command(str(KV_MEMORY))
    assert cmd.argv[-2:] == ["-m", "kv_memory"] and cmd.pythonpath == [str(KV_MEMORY.parent)]
    with pytest.raises(Exception, match=r"host h1 cannot read provider /elsewhere/p.py \(not on that machine\): "
                                        r"run 'trellis app deploy' on the machine that has it"):
        provider_command("file:///elsewhere/p.py", "host h1")


async def test_deploy_uploads_local_files_once_and_records_where_they_came_from(tmp_path, nats_server, lattice):
    shutil.copy(build_wat("adder"), tmp_path / "adder.wasm")
    (tmp_path / "prov.py").write_text("print('a provider')\n")
    shutil.copytree(KV_MEMORY, tmp_path / "kv_memory")
    nc = await nats.connect(nats_server.url)
    try:
        first = await upload_local_files(nc, lattice, MANIFEST, tmp_path)
        assert [(u.component, u.uploaded) for u in first.uploads] == [
            ("adder", True), ("twin", False), ("prov", True), ("kv", True)]  # one file, sent once
        assert first.summary().startswith("artifacts: 3 uploaded")
        assert any("/nowhere/far.wasm does not exist on this machine" in w for w in first.warnings)
        comps = {c["name"]: c["properties"] for c in json.loads(first.manifest)["spec"]["components"]}
        assert comps["kv"]["source"] == f"file://{tmp_path / 'kv_memory'}"
        assert comps["builtin"] == {"image": "builtin:keyvalue-nats"} and comps["far"]["image"] == "/nowhere/far.wasm"
        digest = comps["prov"]["image"].removeprefix("lattice://")
        assert await fetch_lattice(nc, lattice, digest) == b"print('a provider')\n"

        again = await upload_local_files(nc, lattice, MANIFEST, tmp_path)
        assert not any(u.uploaded for u in again.uploads)
        assert again.summary() == "artifacts: all 4 already in the lattice, nothing uploaded"
        assert again.manifest == first.manifest  # same files, same manifest: the same version

        (tmp_path / "adder.wasm").write_text("not wasm")
        with pytest.raises(UploadError, match=r'component "adder": .*adder.wasm is not a WebAssembly component'):
            await upload_local_files(nc, lattice, MANIFEST, tmp_path)
    finally:
        await nc.close()


def test_push_takes_a_provider_folder_and_refuses_other_files(cli, tmp_path):
    ok = cli("push", str(KV_MEMORY))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "lattice://" + sha256_digest(pack_folder(KV_MEMORY))
    (tmp_path / "notes.txt").write_text("hello")
    bad = cli("push", str(tmp_path / "notes.txt"))
    assert bad.returncode == 1 and "not a WebAssembly binary nor a provider .py file or folder" in bad.stderr


def test_validate_takes_uploaded_and_folder_providers_and_still_warns_about_others():
    from trellis.wadm.manifest import parse_manifest, validate

    def warnings(image: str) -> list[str]:
        m = parse_manifest(MANIFEST.replace("./prov.py", image))
        return [str(p) for p in validate(m) if "this provider will not start" in str(p)]

    assert warnings("lattice://sha256:" + "a" * 64) == []
    assert warnings("./providers/kv_memory") == []
    assert warnings("./prov.wasm") and warnings("ghcr.io/acme/prov:1")
