"""Which imports the host answers for a ``wasi:http`` component, and the handler that does.

:func:`shadowed` names the imports the host defines instead of wasmtime's WASI: the
``wasi:io`` and ``wasi:http`` interfaces and, to a fixed point, every import whose
resource types come from one of them (``wasi:cli/stdout`` returns a ``wasi:io``
``output-stream``, ``wasi:filesystem/preopens`` a ``wasi:filesystem/types`` descriptor, ...).
They are bound like any other import (:func:`trellis.host.runtime.imports.build_linker`, with
shadowing on) and answered by :class:`WasiHttpHandler` before the call's own handler
sees anything: a ``wasi:keyvalue`` or ``wasi:logging`` import of the same component goes
on to the link, exactly as for a ``trellis:http`` component.

``wasi:filesystem`` (no preopened directories: ``get-directories`` is empty) and
``wasi:sockets`` are refused: the first use of one fails the call naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from trellis.interfaces.resources import unversioned
from trellis.kit.bodies import CollectSink

from ..component import LoadedComponent
from ..errors import ImportFailed, MissingLink
from ..imports import HostResource, ImportHandler
from ..wit import OptionT, VariantT
from .io import IO, std_stream
from .outgoing import OutgoingCall
from .types import HTTP, FutureIncomingResponse, OutgoingRequest, method_name

__all__ = ["INCOMING", "OUTGOING", "WasiHttpHandler", "find_handler", "shadowed"]

log = logging.getLogger("trellis.host.runtime.wasi_http")

#: the export a wasi:http component serves requests with (unversioned)
INCOMING = "wasi:http/incoming-handler"
#: the import whose calls go to the lattice's http-client provider (unversioned)
OUTGOING = "wasi:http/outgoing-handler"
_ROOTS = ("wasi:io/", "wasi:http/")
_REFUSED = ("wasi:filesystem/", "wasi:sockets/")


def find_handler(loaded: LoadedComponent) -> Any:
    """The ``wasi:http/incoming-handler@0.2.x`` ``handle`` export, or None."""
    for name, iface in loaded.exports.interfaces.items():
        if unversioned(name) == INCOMING and name.split("@", 1)[-1].startswith("0.2"):
            return iface.functions.get("handle")
    return None


def shadowed(loaded: LoadedComponent) -> frozenset[str]:
    """The import names (as the component spells them) the host answers for a wasi:http component."""
    imports = loaded.imports.interfaces
    out = {n for n in imports if n.startswith(_ROOTS)}
    changed = True
    while changed:  # resources shared either way: both sides must be the host's
        changed = False
        for name, iface in imports.items():
            refs = {ref.interface for ref in iface.canonical.values() if ref.interface in imports}
            if name in out:
                new = refs - out
            elif refs & out:
                new = refs - out | {name}
            else:
                continue
            if new:
                out |= new
                changed = True
    return frozenset(out)


def _error_code_names(loaded: LoadedComponent) -> dict[str, str]:
    """Lower-case ``error-code`` case name -> the component's own (``dns-timeout`` -> ``DNS-timeout``)."""
    for name, iface in loaded.imports.interfaces.items():
        if unversioned(name) != "wasi:http/types":
            continue
        fn = iface.functions.get("http-error-code")
        ty = fn.result if fn is not None else None
        if isinstance(ty, OptionT) and isinstance(ty.payload, VariantT):
            return {case.lower(): case for case, _ in ty.payload.cases}
    return {}


class WasiHttpHandler:
    """An :class:`~trellis.host.runtime.imports.ImportHandler` for one call of a wasi:http component:
    answers the shadowed imports, passes the others (and outgoing requests) to ``outer``."""

    __slots__ = ("outer", "shadow", "codes", "stderr", "outgoing", "stdout", "calls")

    def __init__(self, outer: ImportHandler, shadow: frozenset[str], codes: dict[str, str],
                 stderr: Callable[[bytes], None] | None, outgoing: str | None,
                 stdout: Callable[[bytes], None] | None = None) -> None:
        self.outer = outer
        self.shadow = shadow
        self.codes = codes
        self.stderr = stderr
        self.stdout = stdout
        #: the component's outgoing-handler import name (as it spells it), if any
        self.outgoing = outgoing
        #: this call's outgoing requests (their streams end with it)
        self.calls: list[OutgoingCall] = []

    def __call__(self, interface: str, function: str, args: list[Any]) -> Any:
        if interface not in self.shadow:
            return self.outer(interface, function, args)
        if function.startswith("[resource-drop]"):
            return None
        key = (unversioned(interface), function)
        impl = IO.get(key) or HTTP.get(key)  # bound directly (binding.py); here when called otherwise
        if impl is not None:
            return impl(args)
        if key == ("wasi:cli/stdout", "get-stdout"):
            return std_stream("stdout", self.stdout)
        if key == ("wasi:cli/stderr", "get-stderr"):
            return std_stream("stderr", self.stderr)
        if key[0] == OUTGOING and function == "handle":
            return self._handle(args)
        if interface.startswith(_REFUSED):
            raise ImportFailed(interface, function, f"{key[0]} is not available to wasi:http components on "
                                                    "Trellis (no preopened directories, no sockets)")
        raise ImportFailed(interface, function, f"{key[0]}.{function} is not implemented by Trellis's wasi:http host")

    # -- outgoing requests ------------------------------------------------------------------

    def _handle(self, args: list[Any]) -> Any:
        request: OutgoingRequest = args[0]
        options = args[1]
        if request.authority is None:
            return {"err": self._code("http-request-uri-invalid")}
        scheme = request.scheme
        scheme_name = "http" if scheme is None else next(iter(scheme)) if isinstance(scheme, dict) else str(scheme)
        scheme_name = str(scheme["other"]) if scheme_name == "other" else scheme_name.lower()
        wire = {"method": method_name(request.method),
                "url": f"{scheme_name}://{request.authority}{request.path_with_query or '/'}",
                "headers": [[k, v] for k, v in request.headers.entries]}

        def ms(ns: Any) -> int | None:
            return max(1, int(ns / 1e6)) if ns else None
        wire_options = {"timeout-ms": None, "follow-redirects": False,
                        "connect-timeout-ms": ms(getattr(options, "connect_timeout", None)),
                        "first-byte-timeout-ms": ms(getattr(options, "first_byte_timeout", None)),
                        "between-bytes-timeout-ms": ms(getattr(options, "between_bytes_timeout", None))}
        body = request.body
        collected = body.stream.sink if body is not None and isinstance(body.stream.sink, CollectSink) else None
        call = OutgoingCall(wire, wire_options, collected, body is None or body.finished, self._send, self._code)
        if call.sink is not None and body is not None:
            body.stream.sink = call.sink  # its writes now go through the call (streamed once large)
        self.calls.append(call)
        return {"ok": HostResource(FutureIncomingResponse(call))}

    def close(self) -> None:
        """The guest's call ended: its outgoing requests' streams still open are given up."""
        for call in self.calls:
            call.close()
        self.calls.clear()

    def _send(self, req: dict[str, Any], wire_options: dict[str, Any]) -> Any:
        """The exchange through the linked http-client provider: ``{"ok": response}`` or
        ``{"err": error-code}`` (plain, the component's case names)."""
        # "send", not the WIT's "handle": the records form the http-client provider exports
        try:
            result = self.outer(self.outgoing or OUTGOING, "send", [req, wire_options])
        except MissingLink as exc:  # no egress without a link: as a refused destination
            log.warning("%s", exc)
            return {"err": self._code("http-request-denied")}
        except ImportFailed as exc:
            return {"err": self._code("internal-error", str(exc)[:500])}
        if isinstance(result, dict) and "err" in result:
            return {"err": self._rename_code(result["err"])}
        if isinstance(result, dict) and "ok" in result:
            return result
        return {"err": self._code("internal-error", "the http-client returned no response")}

    def _code(self, case: str, payload: Any = None) -> Any:
        return {self.codes.get(case, case): payload}

    def _rename_code(self, code: Any) -> Any:
        if isinstance(code, dict) and len(code) == 1:
            case, payload = next(iter(code.items()))
            return self._code(str(case).lower(), payload)
        if isinstance(code, str):  # a provider's text: no case says more than that
            return self._code("internal-error", code)
        return self._code("internal-error", None)
