"""``python -m kv_memory``: bootstrap JSON on stdin (from a host), or flags by hand (``--help``)."""

from trellis.providers.sdk import run

from . import kv

run(kv)
