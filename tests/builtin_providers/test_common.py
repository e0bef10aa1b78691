"""The shared pieces of the built-in providers: per-link state, shared connections, probes, config."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from trellis.interfaces.links import Link
from trellis.providers.builtin._common import config as cfgs
from trellis.providers.builtin._common import links
from trellis.providers.builtin._common.health import Prober
from trellis.providers.builtin._common.links import LinkTable, LinkUnusable, NotLinked
from trellis.providers.builtin._common.shared import Shared


def link(source: str = "comp", cfg: str = "c") -> Link:
    return Link(source_id=source, target="prov", wit_namespace="wasi", wit_package="keyvalue", interfaces=["store"],
                target_config=[cfg])


@dataclass
class Ctx:
    """What LinkTable.for_call reads from an SDK Context."""

    source: str = "comp"
    link_name: str = "default"
    link: Link | None = None
    config: dict[str, str] = field(default_factory=dict)
    provider_id: str = "prov"
    interface: str = "wasi:keyvalue/store"
    deadline: float = field(default_factory=lambda: time.time() + 30)

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())


@dataclass
class State:
    config: dict[str, str]
    closed: bool = False


def table() -> tuple[LinkTable[State], list[State]]:
    built: list[State] = []

    async def build(lk: Link, config: dict[str, str]) -> State:
        if config.get("bad"):
            raise cfgs.ConfigError(f"bad is {config['bad']!r}")
        built.append(State(config))
        return built[-1]

    async def close(state: State) -> None:
        state.closed = True

    return LinkTable("test", build, close), built


async def test_link_state_is_rebuilt_only_when_its_config_changes() -> None:
    t, built = table()
    t.base = {"url": "x", "size": "1"}
    first = await t.put(link(), {"size": "2"}, "prov")
    assert first.config == {"url": "x", "size": "2"}  # the link's config over the provider's
    assert await t.put(link(), {"size": "2"}, "prov") is first and len(built) == 1
    second = await t.put(link(), {"size": "3"}, "prov")
    assert first.closed and not second.closed
    await t.rebase({"url": "y"})
    third = (await t.for_call(Ctx()))
    assert second.closed and third.config == {"url": "y", "size": "3"}
    await t.delete(link(), "prov")
    assert third.closed and len(t) == 0


async def test_a_bad_config_is_every_callers_error_until_fixed() -> None:
    t, _ = table()
    with pytest.raises(LinkUnusable, match="bad is 'yes'"):
        await t.put(link(), {"bad": "yes"}, "prov")
    with pytest.raises(LinkUnusable, match="bad is 'yes'"):
        await t.for_call(Ctx())
    assert list(t.errors().values())[0].endswith("bad is 'yes'")
    fixed = await t.put(link(), {}, "prov")
    assert await t.for_call(Ctx()) is fixed and not t.errors()


async def test_a_call_that_outruns_its_link_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(links, "LINK_GRACE_S", 5.0)
    t, _ = table()
    call = asyncio.create_task(t.for_call(Ctx()))
    await asyncio.sleep(0.01)
    assert not call.done()
    state = await t.put(link(), {}, "prov")
    assert await asyncio.wait_for(call, 1) is state
    assert not t._arrivals and not t._waiting


async def test_a_caller_without_a_link_is_refused_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(links, "LINK_GRACE_S", 0.05)
    t, _ = table()
    began = time.monotonic()
    results = await asyncio.gather(*(t.for_call(Ctx(source="stranger")) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, NotLinked) for r in results) and time.monotonic() - began < 1
    assert not t._arrivals and not t._waiting  # nothing kept for callers that never get a link


async def test_a_call_carrying_its_link_builds_the_state_itself() -> None:
    t, built = table()
    state = await t.for_call(Ctx(link=link(), config={"size": "9"}))
    assert state.config == {"size": "9"}
    assert await t.put(link(), {"size": "9"}, "prov") is state and len(built) == 1  # the later callback: no-op


async def test_shared_resources_open_once_retry_failures_and_close_with_the_last_user() -> None:
    opened: list[str] = []
    closed: list[str] = []
    failures = {"down": 1}
    gate = asyncio.Event()

    async def opener(key: str) -> str:
        await gate.wait()
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise ConnectionError(f"{key} unreachable")
        opened.append(key)
        return f"conn-{key}"

    async def closer(resource: str) -> None:
        closed.append(resource)

    shared: Shared[str, str] = Shared("test", opener, closer)
    shared.attach("a")
    shared.attach("a")
    getters = [asyncio.create_task(shared.get("a")) for _ in range(5)]
    gate.set()
    assert await asyncio.gather(*getters) == ["conn-a"] * 5 and opened == ["a"]  # one open for all
    shared.attach("down")
    with pytest.raises(ConnectionError):
        await shared.get("down")
    assert shared.last_error("down") == "down unreachable"
    assert await shared.get("down") == "conn-down"  # the next use tries again
    await shared.detach("a")
    assert closed == []
    await shared.detach("a")
    assert closed == ["conn-a"] and shared.keys() == ["down"]
    await shared.close_all()
    assert closed == ["conn-a", "conn-down"]


async def test_a_getter_giving_up_does_not_cancel_the_open_others_wait_for() -> None:
    gate = asyncio.Event()

    async def opener(key: str) -> str:
        await gate.wait()
        return key

    async def closer(resource: str) -> None:
        pass

    shared: Shared[str, str] = Shared("test", opener, closer)
    shared.attach("k")
    impatient = asyncio.create_task(shared.get("k"))
    patient = asyncio.create_task(shared.get("k"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    gate.set()
    assert await patient == "k"


async def test_prober_answers_at_once_and_refreshes_in_the_background() -> None:
    results = [(False, "down"), (True, "up")]
    calls = 0

    async def probe() -> tuple[bool, str]:
        nonlocal calls
        calls += 1
        return results[min(calls - 1, 1)]

    prober = Prober("test", probe, interval_s=0.0)
    assert prober.answer() == (True, "backends not probed yet")  # at once; a probe starts behind it
    assert prober._task is not None
    await prober._task
    assert prober.answer() == (False, "down")
    await prober._task
    assert prober.answer() == (True, "up")
    await prober.close()


def test_config_values() -> None:
    cfg = {"n": "3", "neg": "-1", "word": "x", "yes": "On", "list": " a, b ,,c ", "blank": " "}
    assert cfgs.integer(cfg, "n", 1) == 3 and cfgs.integer(cfg, "missing", 7) == 7
    assert cfgs.integer(cfg, "blank", 7) == 7
    with pytest.raises(cfgs.ConfigError, match="neg must be at least 0"):
        cfgs.integer(cfg, "neg", 1, minimum=0)
    with pytest.raises(cfgs.ConfigError, match="word must be a whole number"):
        cfgs.integer(cfg, "word", 1)
    assert cfgs.boolean(cfg, "yes", False) is True
    with pytest.raises(cfgs.ConfigError, match="word must be true or false"):
        cfgs.boolean(cfg, "word", False)
    assert cfgs.csv(cfg, "list") == ("a", "b", "c")
    with pytest.raises(cfgs.ConfigError, match="one of a, b"):
        cfgs.choice(cfg, "word", "a", ("a", "b"))
    assert cfgs.merged({"a": "1", "b": "1"}, {"b": "2"}) == {"a": "1", "b": "2"}


def test_unknown_keys_are_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    where: Any = f"test-{time.time()}"
    assert cfgs.unknown_keys({"url": "x", "ulr": "y"}, ["url"], where) == ["ulr"]
    cfgs.unknown_keys({"ulr": "y"}, ["url"], where)
    assert sum("'ulr'" in r.getMessage() for r in caplog.records) == 1
