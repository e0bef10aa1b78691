"""NATS credentials reach every process that connects: token, user/password, nkey."""

from __future__ import annotations

import json
import os

import nkeys
import pytest

from trellis.natsserver import NatsServer

from ..harness import HostProcess, run_cli


@pytest.fixture
def user_nkey(tmp_path):
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    path = tmp_path / "user.nk"
    path.write_bytes(seed)
    return public, path


@pytest.mark.parametrize("mode", ["token", "userpass", "nkey"])
def test_host_and_cli_authenticate(mode, tmp_path, lattice, user_nkey):
    conf = tmp_path / "nats.conf"
    if mode == "token":
        conf.write_text('authorization { token: "s3cret" }\n')
        creds = ["--nats-token", "s3cret"]
        env = {"TRELLIS_NATS_TOKEN": "s3cret"}
    elif mode == "userpass":
        conf.write_text('authorization { user: "alice", password: "wonder" }\n')
        creds = ["--nats-user", "alice", "--nats-password", "wonder"]
        env = {"TRELLIS_NATS_USER": "alice", "TRELLIS_NATS_PASSWORD": "wonder"}
    else:
        public, path = user_nkey
        conf.write_text(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n')
        creds = ["--nats-nkey", str(path)]
        env = {"TRELLIS_NATS_NKEY": str(path)}
    server = NatsServer(port=0, config_file=conf, store_dir=tmp_path / "js")
    server.start()
    host = None
    try:
        host = HostProcess(server.url, lattice, *creds, "--state-dir", str(tmp_path / "h"),
                           log=tmp_path / "host.log").wait_started()
        ok = run_cli("get", "hosts", "-o", "json", "--nats-url", server.url, "--lattice", lattice, env=env)
        assert ok.returncode == 0, ok.stderr
        assert [h["id"] for h in json.loads(ok.stdout)] == [host.id]
        denied = run_cli("get", "hosts", "--nats-url", server.url, "--lattice", lattice, timeout=60)
        assert denied.returncode != 0 and "authorization" in denied.stderr.lower(), denied.stderr
    finally:
        if host:
            host.stop()
        server.stop()
