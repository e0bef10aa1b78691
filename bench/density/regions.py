"""A process's PSS by kind of memory region, from ``/proc/PID/smaps``.

Used by ``python -m bench.density.anatomy --regions`` to say where a worker's memory
is at the load's peak: the compiled components' code and data images (``*.cwasm``
mappings: file pages, shared between workers, plus the pages each instance dirtied
in its copy-on-write linear memory, counted as anonymous), anonymous memory
(wasmtime's linear memories and tables of live instances, glibc's arenas, the
Python heap, Go's heap), the C heap (``[heap]``), thread stacks and shared libraries.
"""

from __future__ import annotations

from collections import defaultdict

#: (kind, substrings of the mapping's path): first match wins; unnamed mappings are "anonymous"
_KINDS = (
    ("compiled wasm (.cwasm)", (".cwasm", "/compiled/")),
    ("memfd (wasmtime images)", ("memfd:",)),
    ("[heap] (brk: malloc)", ("[heap]",)),
    ("stacks", ("[stack",)),
    ("libwasmtime", ("libwasmtime", "_libwasmtime")),
    ("libpython / extensions", ("libpython", ".cpython-", "python3", ".so")),
    ("other files", ("/",)),
)


def _kind(path: str) -> str:
    if not path:
        return "anonymous"
    return next((kind for kind, marks in _KINDS if any(m in path for m in marks)), "other")


def regions(pid: int) -> dict[str, dict[str, float]]:
    """PSS (MiB) per kind of region, split into anonymous and file pages; also the number of
    anonymous mappings of at least 1 GiB of address space (wasmtime's linear-memory reservations:
    one per live instance's memory)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"pss": 0.0, "anon": 0.0, "mappings": 0})
    path = ""
    size_kib = 0
    big = 0
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 5)
                if not head:
                    continue
                if "-" in head[0] and not head[0].endswith(":"):
                    path = head[5].strip() if len(head) > 5 else ""
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    size_kib = (hi - lo) // 1024
                    if not path and size_kib >= 1 << 20:
                        big += 1
                    out[_kind(path)]["mappings"] += 1
                elif head[0] == "Pss:":
                    out[_kind(path)]["pss"] += int(head[1]) / 1024
                elif head[0] == "Anonymous:":
                    out[_kind(path)]["anon"] += int(head[1]) / 1024
    except (OSError, ValueError):
        return {}
    res = {k: {"pss": round(v["pss"], 1), "anon_rss": round(v["anon"], 1), "mappings": int(v["mappings"])}
           for k, v in sorted(out.items(), key=lambda kv: -kv[1]["pss"])}
    res["reservations >= 1 GiB"] = {"pss": 0.0, "anon_rss": 0.0, "mappings": big}
    return res
