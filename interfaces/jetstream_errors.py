"""Which JetStream failures pass by themselves, and how to say what went wrong.

Shared by everything that reads a lattice bucket or the artifact store while a NATS
cluster may be electing leaders (the controller's app store, artifact fetches).
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from .errors import ErrorCode, TrellisError

#: JetStream error code "JetStream not enabled for account": a 503 that waiting does not cure
JS_NOT_ENABLED_FOR_ACCOUNT = 10039


def transient(exc: BaseException) -> bool:
    """Whether a JetStream request may succeed if simply tried again a moment later.

    A cluster electing a meta or stream leader (a node lost, restarted or cut off)
    answers ``503 JetStream system temporarily unavailable`` or nothing at all (a
    timeout) for a few seconds; a client whose node just died is reconnecting. No
    responders (JetStream not enabled) or any other error is not transient.
    """
    if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError, nats.errors.ConnectionReconnectingError,
                        nats.js.errors.NoStreamResponseError)):
        return True
    if isinstance(exc, nats.js.errors.APIError):
        return exc.code == 503 and exc.err_code != JS_NOT_ENABLED_FOR_ACCOUNT
    if isinstance(exc, TrellisError):  # trellis.interfaces.store translates JetStream's errors into these
        return exc.code == ErrorCode.TIMEOUT
    return False


def describe(exc: BaseException) -> str:
    """A short reason for a log line or an error message."""
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return f"{exc.code} {exc.description}"
    if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError)):
        return "no answer"
    return str(exc) or exc.__class__.__name__
