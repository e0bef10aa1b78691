"""``python -m trellis.providers.builtin.http_server``: bootstrap JSON on stdin (from a host), or flags."""

from trellis.providers.sdk import run

from . import provider

run(provider)
