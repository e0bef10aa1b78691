"""``python -m providers.builtin.http_server``: bootstrap JSON on stdin (from a host), or flags."""

from providers.sdk import run

from . import provider

run(provider)
