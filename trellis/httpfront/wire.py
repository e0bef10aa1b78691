"""HTTP/1.1 bytes ↔ ``trellis:http`` records, and the front's own error responses.

Pure functions, no I/O. A request becomes the plain form of ``types.request``
(``{"method", "path-with-query", "headers", "body"}``; header names lower-case,
values bytes). A component's ``types.response`` is checked before a byte of it
is written: a status outside 200-599, a header name that is not a token or a
value with CR, LF or NUL makes the response invalid (502), so a component can
never split a response. The front owns framing: ``content-length``,
``transfer-encoding``, ``connection`` and the other hop-by-hop headers a
component returns are dropped (``connection: close`` is honoured).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

#: the front's verdicts on a request it could not hand to a component
NO_ROUTE = 404
TOO_LARGE = 413
HEADERS_TOO_LARGE = 431
READ_TIMEOUT = 408
BAD_REQUEST = 400
FAILED = 502
UNAVAILABLE = 503
TIMED_OUT = 504

#: methods a lost call may be sent again for (RFC 9110 §9.2.2)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
#: framing the front decides; a component's values for these are dropped
_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                  "proxy-connection", "te", "trailer"})
_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


class InvalidResponse(ValueError):
    """The component's response cannot be sent; the message says which part."""


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[status] = line
    return line


class DateHeader:
    """``date: …\\r\\n``, formatted at most once a second."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


def request_record(method: str, target: str, headers: list[list[Any]], body: bytes) -> dict[str, Any]:
    """The plain ``types.request`` for the component."""
    return {"method": method, "path-with-query": target, "headers": headers, "body": body}


def origin_form(url: bytes) -> tuple[str, str]:
    """The request target as ``(path-with-query, path)``; absolute-form is reduced to its path.

    Raises ``ValueError`` for a target that is not ASCII.
    """
    text = url.decode("ascii")
    if not text.startswith("/"):
        if text == "*":
            return "*", "*"
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise ValueError(f"unsupported request target {text[:64]!r}")
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or (0 <= query < slash):  # noqa: SIM108 (two cases read better as two lines)
            text = "/" + (rest[query:] if query >= 0 else "")
        else:
            text = rest[slash:]
    q = text.find("?")
    return text, (text if q < 0 else text[:q])


def response_head(response: Any, *, head_only: bool, keep_alive: bool, http10: bool,
                  date: DateHeader) -> tuple[bytes, bytes, bool]:
    """Check a component's response record; return (head, body to send, keep the connection).

    Raises :class:`InvalidResponse` when any part cannot be sent as it is.
    """
    if not isinstance(response, dict):
        raise InvalidResponse(f"expected a response record, got {type(response).__name__}")
    try:
        status = response["status"]
        headers = response["headers"]
        body = response["body"]
    except KeyError as exc:
        raise InvalidResponse(f"response record lacks {exc.args[0]!r}") from None
    if type(status) is not int or not 200 <= status <= 599:
        raise InvalidResponse(f"status {status!r} is not a final status (200-599)")
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidResponse(f"body must be bytes, got {type(body).__name__}")
    parts = [status_line(status)]
    has_date, close, _ = _header_lines(headers, parts)  # content-length: the body's, below
    keep_alive = keep_alive and not close
    if not has_date:
        parts.append(date.line())
    no_body = status in (204, 304)
    if status != 204:
        parts.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), (b"" if head_only or no_body else bytes(body)), keep_alive


def _header_lines(headers: Any, parts: list[bytes]) -> tuple[bool, bool, bytes | None]:
    """Check a component's response headers and append their lines to ``parts``, hop-by-hop ones
    left out (the front frames the body itself). Returns (a ``date`` was given, the component asked
    for ``connection: close``, the value of its ``content-length`` if any).

    Raises :class:`InvalidResponse` for a header that cannot be sent as it is."""
    has_date = close = False
    length: bytes | None = None
    for item in headers:
        try:
            name, value = item
            raw: bytes = name.encode("ascii").lower()
        except (TypeError, ValueError, AttributeError, UnicodeError):
            raise InvalidResponse(f"header {item!r:.80} is not a (name, bytes) pair of ASCII name") from None
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidResponse(f"header {name!r}: value must be bytes")
        if not _TOKEN.match(raw):
            raise InvalidResponse(f"header name {name!r:.80} is not a valid token")
        if _BAD_VALUE.search(value):
            raise InvalidResponse(f"header {name!r}: value contains CR, LF or NUL")
        lowered = raw.decode()
        if lowered in _HOP:
            if lowered == "content-length":
                length = bytes(value)
            elif lowered == "connection" and b"close" in value.lower():
                close = True
            continue
        if lowered == "date":
            has_date = True
        parts += (raw, b": ", bytes(value), b"\r\n")
    return has_date, close, length


#: how a streamed response's body is framed (:func:`streamed_head`)
CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE = "chunked", "length", "none", "close"


def streamed_head(status: int, headers: list[tuple[str, bytes]], *, head_only: bool, keep_alive: bool,
                  http10: bool, date: DateHeader) -> tuple[bytes, str, int, bool]:
    """The head of a response whose body is sent as it is written: (head, framing, length, keep
    the connection). ``framing``: :data:`LENGTH` when the component set ``content-length``
    (``length`` bytes), :data:`CHUNKED`, :data:`NO_BODY` (HEAD, 204, 304), or
    :data:`UNTIL_CLOSE` (an HTTP/1.0 client: the body ends when the connection closes).

    Raises :class:`InvalidResponse` as :func:`response_head` does."""
    if type(status) is not int or not 200 <= status <= 599:
        raise InvalidResponse(f"status {status!r} is not a final status (200-599)")
    parts = [status_line(status)]
    has_date, close, given = _header_lines(headers, parts)
    keep_alive = keep_alive and not close
    length = -1
    if given is not None:
        try:
            length = int(given)
        except ValueError:
            raise InvalidResponse(f"content-length {given[:40]!r} is not a number") from None
        if length < 0:
            raise InvalidResponse("content-length is negative")
    if not has_date:
        parts.append(date.line())
    if status in (204, 304) or head_only:
        framing = NO_BODY
        if length >= 0 and status != 204:
            parts.append(b"content-length: %d\r\n" % length)
        length = 0
    elif length >= 0:
        framing = LENGTH
        parts.append(b"content-length: %d\r\n" % length)
    elif http10:
        framing, keep_alive = UNTIL_CLOSE, False
    else:
        framing = CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), framing, max(length, 0), keep_alive


def error_head(status: int, message: str, *, head_only: bool, keep_alive: bool, http10: bool,
               date: DateHeader) -> tuple[bytes, bytes]:
    """A response the front writes itself: ``text/plain``, one line saying why."""
    body = f"{status} {_REASONS.get(status, b'').decode()}: {message}\n".encode("utf-8", "replace")
    head = b"".join((
        status_line(status), b"content-type: text/plain; charset=utf-8\r\n", date.line(),
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n" if not keep_alive else b"connection: keep-alive\r\n" if http10 else b"",
        b"\r\n",
    ))
    return head, b"" if head_only else body
