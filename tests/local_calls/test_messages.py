"""The host↔worker channel (host/workers/messages.py): what one end writes, the other parses."""

from __future__ import annotations

import json

import pytest

from trellis.host.tuning import Tuning
from trellis.host.workers.messages import (
    Answer,
    Boot,
    Load,
    Ready,
    Scale,
    Shutdown,
    Stats,
    Unload,
    parse_command,
    parse_event,
)


def test_every_command_round_trips() -> None:
    load = Load(component_id="echo", path="/tmp/echo.wasm", max_instances=5, share=3, config=["cfg"],
                app="shop", secrets={"key": {"kind": "string", "value": "s3cret"}})
    for cmd in (load, Unload(component_id="echo", grace_s=2.5), Scale(component_id="echo", share=0), Stats(),
                Shutdown(grace_s=1.0)):
        line = cmd.model_copy(update={"id": 7}).line()
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        back = parse_command(line)
        assert type(back) is type(cmd) and back.id == 7
        assert back.model_dump(exclude={"id"}) == cmd.model_dump(exclude={"id"})


def test_a_load_for_each_worker_keeps_all_but_the_share_and_never_shows_its_secrets() -> None:
    load = Load(component_id="echo", path="/p", max_instances=5, secrets={"key": {"value": "s3cret"}})
    mine = load.for_worker(2)
    assert (mine.share, load.share) == (2, 0) and mine.secrets == load.secrets
    assert "s3cret" not in repr(mine) and "s3cret" not in str(mine)


@pytest.mark.parametrize("line, why", [
    (b'{"op": "reload", "id": 1}', "reload"),  # no such command
    (b'{"op": "scale", "id": 1, "component_id": "x"}', "share"),  # a field missing
    (b'{"op": "unload", "id": 1, "component_id": "x", "grace": 3}', "grace"),  # a field misspelt
    (b"not json", "json"),
])
def test_what_is_not_a_command_says_why(line: bytes, why: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_command(line)
    assert why in str(err.value).lower()


def test_events() -> None:
    assert parse_event(Ready(pid=42).line()) == Ready(pid=42)
    answer = parse_event(Answer(id=3, ok=True, result={"echo": {"share": 1, "tags": {"a"}}}).line())
    assert answer == Answer(id=3, ok=True, result={"echo": {"share": 1, "tags": "{'a'}"}})  # JSON, str else
    assert parse_event(Answer(id=4, ok=False, error="ValueError: nope").line()).error == "ValueError: nope"


def test_the_boot_carries_the_tuning() -> None:
    tuning = Tuning.from_env({"TRELLIS_LOCAL_CALLS": "0", "TRELLIS_INLINE_BUDGET_MS": "5"})
    boot = Boot(lattice="l", host_id="h", nats={"url": "nats://127.0.0.1:4222"}, tuning=tuning)
    back = Boot.model_validate_json(boot.model_copy(update={"worker_index": 3}).line())
    assert back.worker_index == 3 and back.tuning == tuning
    assert back.tuning.calls.local_calls is False and back.tuning.calls.inline_budget_ms == 5.0
    assert json.loads(boot.line())["tuning"]["wasm"]["hold_gil"] is True
