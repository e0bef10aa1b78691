"""Errors a provider raises and how they travel to the caller."""

from __future__ import annotations

from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError

#: codes with a meaning across the lattice; any other code still travels (as ``kind``)
WELL_KNOWN = frozenset(c.value for c in ErrorCode)


class ProviderError(Exception):
    """Raise from a handler to fail the call with a typed error.

    ``code`` is yours to choose (``"no-such-bucket"``, ``"not_found"``, …) and
    reaches the caller unchanged as the error's ``kind``; when it is one of the
    lattice's codes (:class:`trellis.interfaces.errors.ErrorCode`, e.g. ``not_found``,
    ``bad_request``, ``conflict``) it is also the error's ``code``, otherwise the
    code is ``invocation_failed``. Handler errors are never retried.
    """

    def __init__(self, code: str, message: str) -> None:
        if not isinstance(code, str) or not code:
            raise TypeError("ProviderError needs a non-empty string code")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProviderError({self.code!r}, {self.message!r})"

    def to_rpc_error(self) -> RpcError:
        code = self.code if self.code in WELL_KNOWN else ErrorCode.INVOCATION_FAILED
        return RpcError(self.message, code, self.code)


#: what a provider's outgoing ``call`` raises when the callee fails (re-exported as CallError)
CallError = RpcError
