"""The real `trellis` command: link put/del, get links, config put/get/del/list."""

from __future__ import annotations

import asyncio
import json

PUT = ("link", "put", "comp", "kv-redis", "wasi", "keyvalue")


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def test_link_put_get_del(cli):
    out = ok(cli(*PUT, "--interface", "store", "--interface", "atomics", "--target-config", "redis"))
    assert "link put: comp -> kv-redis wasi:keyvalue/{atomics,store} (name 'default')" in out
    ok(cli("link", "put", "comp", "blobs", "wasi", "blobstore", "--interface", "blobstore",
           "--link-name", "archive", "--source-config", "a,b"))

    links = json.loads(ok(cli("get", "links", "-o", "json")))
    assert [(lk["target"], lk["name"], lk["interfaces"]) for lk in links] == [
        ("blobs", "archive", ["blobstore"]), ("kv-redis", "default", ["atomics", "store"])]
    assert links[0]["source_config"] == ["a", "b"] and links[1]["target_config"] == ["redis"]
    assert [lk["target"] for lk in json.loads(ok(cli("get", "links", "--target", "blobs", "-o", "json")))] == ["blobs"]

    table = ok(cli("get", "links"))
    assert "kv-redis" in table and "wasi:keyvalue" in table and "atomics,store" in table

    out = ok(cli("link", "del", "comp", "wasi", "blobstore", "--link-name", "archive"))
    assert "link deleted: comp -> blobs" in out
    assert [lk["target"] for lk in json.loads(ok(cli("get", "links", "-o", "json")))] == ["kv-redis"]


def test_link_errors_are_clear(cli):
    ok(cli(*PUT, "--interface", "store"))
    r = cli("link", "put", "comp", "kv-mem", "wasi", "keyvalue", "--interface", "store")
    assert r.returncode != 0
    assert "conflicts with existing link comp -> kv-redis" in r.stderr and "comp -> kv-mem" in r.stderr

    r = cli(*PUT)
    assert r.returncode != 0 and "at least one interface" in r.stderr

    r = cli("link", "put", "comp", "kv", "wasi:", "keyvalue", "--interface", "store")
    assert r.returncode != 0 and "invalid WIT namespace 'wasi:'" in r.stderr

    r = cli("link", "del", "comp", "wasi", "keyvalue", "--link-name", "nope")
    assert r.returncode != 0 and "no link from comp for wasi:keyvalue named 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_put_get_del(cli):
    out = ok(cli("config", "put", "redis", "url=redis://h:6379/0", "opts=a=b"))
    assert "config 'redis' put: opts, url" in out
    assert json.loads(ok(cli("config", "get", "redis", "-o", "json"))) == {"url": "redis://h:6379/0", "opts": "a=b"}
    assert "redis://h:6379/0" in ok(cli("config", "get", "redis"))
    assert json.loads(ok(cli("config", "list", "-o", "json"))) == [
        {"name": "redis", "values": {"opts": "a=b", "url": "redis://h:6379/0"}}]
    assert "config 'redis' deleted" in ok(cli("config", "del", "redis"))

    r = cli("config", "get", "redis")
    assert r.returncode != 0 and "config 'redis' not found" in r.stderr
    r = cli("config", "del", "redis")
    assert r.returncode != 0 and "not found" in r.stderr


def test_config_errors_are_clear(cli):
    r = cli("config", "put", "redis", "novalue")
    assert r.returncode != 0 and "'novalue' must be key=value" in r.stderr
    r = cli("config", "put", "bad name", "a=b")
    assert r.returncode != 0 and "invalid config name 'bad name'" in r.stderr
    assert "Traceback" not in r.stderr


async def test_link_put_warns_about_ends_nothing_runs_and_empty_lattices_say_so(cli, hosts):
    """A typo in a link's ids is worth a warning (the link is still stored); a lattice with no
    hosts says so instead of printing an empty table."""
    lonely = cli(*PUT, "--interface", "store")
    assert lonely.returncode == 0 and "no hosts in lattice" in lonely.stderr, lonely.stderr
    empty = cli("get", "hosts")
    assert empty.returncode == 0 and "no hosts in lattice" in empty.stderr and "ID" not in empty.stdout
    assert json.loads(ok(cli("get", "hosts", "-o", "json"))) == []

    await hosts.start()
    out = await asyncio.to_thread(lambda: cli(*PUT, "--interface", "store"))
    assert out.returncode == 0 and "link put:" in out.stdout
    assert "warning: neither 'comp' nor 'kv-redis' runs anywhere" in out.stderr, out.stderr
    table = ok(await asyncio.to_thread(cli, "get", "hosts"))
    assert "os=linux" in table  # the table shows every label -o json shows


def test_no_links_is_one_line_saying_what_to_do(cli):
    r = cli("get", "links", "--source", "nobody")
    assert r.returncode == 0 and r.stdout == "", r
    assert r.stderr.strip().endswith("match: 'trellis link put' adds one (an app's manifest declares its own)")
    assert json.loads(ok(cli("get", "links", "--source", "nobody", "-o", "json"))) == []
