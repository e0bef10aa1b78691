"""Bounding backend work by the caller's deadline, so a slow backend becomes a WIT error.

The SDK fails a call whose handler outlives the caller's deadline; the
component then traps. A built-in provider stops its backend work a little
earlier and answers with the interface's own error, which the component can
handle.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: answer this long before the caller's deadline (or a tenth of the time left, if less)
DEADLINE_MARGIN_S = 0.25


def time_left(ctx: Any) -> float:
    remaining = float(ctx.remaining_s())
    return max(0.001, remaining - min(DEADLINE_MARGIN_S, remaining / 10))


def before_deadline(ctx: Any) -> asyncio.Timeout:
    """``async with before_deadline(ctx):`` raises TimeoutError shortly before the caller gives up."""
    return asyncio.timeout(time_left(ctx))
