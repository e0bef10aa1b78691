"""The nats-server Trellis starts (trellis up, tests, benches) runs with GOGC=25 and GOMEMLIMIT=32MiB unless
told otherwise: an artifact it sends leaves its size in garbage, which Go's default collector kept, and Go
hands freed pages back slowly without a limit (trellis/natsserver.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trellis.natsserver import DEFAULT_GOGC, DEFAULT_GOMEMLIMIT, NatsServer


def test_the_server_runs_with_the_default_gogc(nats_server: NatsServer) -> None:
    assert nats_server.proc is not None
    environ = Path(f"/proc/{nats_server.proc.pid}/environ").read_bytes().split(b"\0")
    assert f"GOGC={os.environ.get('GOGC') or DEFAULT_GOGC}".encode() in environ
    assert f"GOMEMLIMIT={os.environ.get('GOMEMLIMIT') or DEFAULT_GOMEMLIMIT}".encode() in environ


def test_gogc_from_the_environment_or_the_caller_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    assert NatsServer().environment()["GOGC"] == DEFAULT_GOGC
    assert NatsServer(env={"GOGC": "100"}).environment()["GOGC"] == "100"
    monkeypatch.setenv("GOGC", "off")
    assert NatsServer().environment()["GOGC"] == "off"


def test_gomemlimit_defaults_to_32_mib_and_the_environment_or_the_caller_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert DEFAULT_GOMEMLIMIT == "32MiB"
    assert NatsServer().environment()["GOMEMLIMIT"] == "32MiB"
    assert NatsServer(env={"GOMEMLIMIT": "off"}).environment()["GOMEMLIMIT"] == "off"
    monkeypatch.setenv("GOMEMLIMIT", "256MiB")
    assert NatsServer().environment()["GOMEMLIMIT"] == "256MiB"
