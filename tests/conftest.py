"""Fixtures shared by every test: a real nats-server, lattices, hosts, the CLI."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from trellis.natsserver import NatsServer

from .harness import HostFactory, run_cli

#: Tests that run while no other test runs when the suite runs in parallel (pytest-xdist, as CI
#: does): they load every core (a multi-machine cluster) or bound how long something took. Mark
#: a new one with ``@pytest.mark.alone`` (or ``netns``); these are marked here by node id.
ALONE = "alone"
_ALONE = (
    "tests/chaos/",  # a cluster of three machines under load
    # bounds on how long something took (a lease's TTL, a failover, a deadline)
    "tests/wadm_e2e/test_lease.py::",
    "tests/wadm_e2e/test_failover.py::",
    "tests/wadm_e2e/test_health.py::test_http_server_on_a_taken_port_turns_the_app_degraded_naming_the_port",
    "tests/local_calls/test_colocated.py::test_the_callers_deadline_stops_a_nested_target",
    "tests/local_calls/test_colocated.py::test_self_calls_and_cycles_end_at_the_deadline",
    "tests/rpc/test_rpc_lean.py::test_call_that_keeps_progressing_times_out_at_its_deadline_not_lost",
    "tests/rpc/test_rpc_lean.py::test_silence_timer_detects_a_lost_call_within_the_window",
    "tests/builtin_providers/test_common.py::test_a_caller_without_a_link_is_refused_after_the_grace",
    "tests/runtime/test_invoke_nested.py::test_timeout_s_shortens_a_calls_deadline_but_never_extends_it",
    "tests/http/test_gateway.py::test_the_result_and_the_invocation",
    "tests/http/test_gateway.py::test_nothing_serving_is_a_prompt_503",
    "tests/build/test_build_examples.py::test_unchanged_rebuild_is_skipped",
)


def pytest_configure(config: pytest.Config) -> None:
    # Tests that run Wasm in this process do it as a worker does: with wasmtime-py patched
    # (tests/runtime/test_wasmtime_reliance.py checks that importing the runtime alone does not).
    from trellis.host.runtime import wasmtime_patches

    wasmtime_patches.apply()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server (JetStream) for the session; tests isolate by lattice."""
    store = tmp_path_factory.mktemp("nats")
    server = NatsServer(port=0, store_dir=store, log_file=store / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that kill or restart it."""
    server = NatsServer(port=0, store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lattice() -> str:
    """A lattice name no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def hosts(nats_server: NatsServer, lattice: str, tmp_path: Path) -> AsyncIterator[HostFactory]:
    factory = HostFactory(nats_server.url, lattice, tmp_path)
    yield factory
    await factory.close()


@pytest.fixture
def cli(nats_server: NatsServer, lattice: str):
    """Run the real `trellis` CLI against this test's lattice."""
    env = {"TRELLIS_NATS_URL": nats_server.url, "TRELLIS_LATTICE": lattice}

    def run(*args: str, **kw):
        return run_cli(*args, env={**env, **kw.pop("env", {})}, **kw)

    return run


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Every child process a test starts must be gone when it ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before]
    alive = []
    for p in leaked:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline()[:6])}")
        except psutil.NoSuchProcess:
            continue
        p.kill()
    assert not alive, f"test leaked processes: {alive}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("netns") or item.nodeid.startswith(_ALONE):
            item.add_marker(ALONE)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under pytest-xdist, a test marked ``alone`` holds a lock the other tests share: it waits for
    the tests running on other workers to end, and none starts until it has. A waiting ``alone``
    test goes first (a turnstile), so the other workers cannot starve it. The wait is outside the
    test's timeout (this wraps pytest-timeout's timer). Without xdist: nothing."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # the folder every worker of this run shares (each has a popen-gwN folder inside it)
    run_dir = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]  # pytest's own
    alone = item.get_closest_marker(ALONE) is not None
    with open(run_dir / "tests.lock", "a") as lock, open(run_dir / "turnstile.lock", "a") as turnstile:
        if alone:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(turnstile, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
