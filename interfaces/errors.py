"""Error codes shared by every reply on the lattice."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"          # malformed or invalid request
    UNKNOWN_OPERATION = "unknown_operation"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    READ_ONLY = "read_only"
    BUSY = "busy"
    TIMEOUT = "timeout"
    NO_RESPONDERS = "no_responders"
    MISSING_LINK = "missing_link"
    INVOCATION_FAILED = "invocation_failed"
    FORBIDDEN = "forbidden"            # refused by a signature check or the policy service
    INTERNAL = "internal"


class TrellisError(Exception):
    """An error that travels: it has a stable code and a message for people."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = ErrorCode(code)

    @property
    def message(self) -> str:
        return str(self)
