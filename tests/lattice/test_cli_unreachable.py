"""Every lattice command says plainly when NATS cannot be reached: one line, no traceback, exit 1."""

from __future__ import annotations

import socket

import pytest

from tests.harness import run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens there


@pytest.mark.parametrize("args", [["get", "hosts"], ["app", "list"], ["call", "svc", "op"],
                                  ["label", "put", "HOST", "a=b"]])
def test_unreachable_nats_is_one_clear_line(args: list[str]) -> None:
    url = f"nats://127.0.0.1:{_closed_port()}"
    out = run_cli(*args, env={"TRELLIS_NATS_URL": url})
    assert out.returncode == 1, out
    assert out.stderr.strip() == (f"error: cannot reach NATS at {url}: ConnectionRefusedError: [Errno 111] Connect "
                                  f"call failed ('127.0.0.1', {url.rsplit(':', 1)[1]}) (is 'trellis up' running? "
                                  "--nats-url or TRELLIS_NATS_URL says where)"), out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("kind, path", [("component", "./missing.wasm"), ("provider", "./my_provider.py")])
def test_a_missing_local_file_is_said_before_any_host_is_asked(kind: str, path: str) -> None:
    """Not a host's "cannot read it (not on that machine)": the file is not on this one either."""
    out = run_cli("start", kind, path, "x", env={"TRELLIS_NATS_URL": f"nats://127.0.0.1:{_closed_port()}"})
    assert out.returncode == 1 and out.stderr.strip() == f"error: {path}: no such file", out
