"""The nats-server Trellis starts (trellis up, tests, benches) runs with GOGC=25 unless told otherwise:
an artifact it sends leaves its size in garbage, which Go's default collector kept (trellis/natsserver.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trellis.natsserver import DEFAULT_GOGC, NatsServer


def test_the_server_runs_with_the_default_gogc(nats_server: NatsServer) -> None:
    assert nats_server.proc is not None
    environ = Path(f"/proc/{nats_server.proc.pid}/environ").read_bytes().split(b"\0")
    assert f"GOGC={os.environ.get('GOGC') or DEFAULT_GOGC}".encode() in environ


def test_gogc_from_the_environment_or_the_caller_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    assert NatsServer().environment()["GOGC"] == DEFAULT_GOGC
    assert NatsServer(env={"GOGC": "100"}).environment()["GOGC"] == "100"
    monkeypatch.setenv("GOGC", "off")
    assert NatsServer().environment()["GOGC"] == "off"
