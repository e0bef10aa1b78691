"""Logging for every Trellis process: text or JSON lines, to stdout or rotating files, with trace ids.

``--log-format json|text`` and ``--log-to stdout|files`` (``TRELLIS_LOG_FORMAT``,
``TRELLIS_LOG_TO``) on ``trellis host``, ``trellis wadm`` and ``trellis up``; a host
passes them to its workers and providers.

* ``text``: ``2026-12-07 13:00:00,123 INFO trellis.worker: message`` (as before).
* ``json``: one object a line: ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``msg``,
  ``process`` (``host``, ``worker-0``, ``provider-kv``, ``wadm``), ``pid``, and, when the
  line is written while a traced invocation runs, ``trace_id`` and ``span_id`` (hex, as in
  W3C ``traceparent``); an exception as ``exc``. Extra fields given with ``extra=`` are kept.
* ``stdout``: every process writes to standard output (containers, journald). A worker's
  stdout is its host's command channel, so a worker writes to the host's stdout through
  its inherited standard error instead; the same lines, in the same place.
* ``files``: ``STATE_DIR/logs/<process>.log``, rotated at ``TRELLIS_LOG_MAX_BYTES``
  (default 10 MiB) keeping ``TRELLIS_LOG_BACKUPS`` old files (default 5). What a child
  process writes to its standard streams besides its log (a crash) goes to
  ``<process>.stderr.log`` beside it.
* neither given: as before these options existed: a host and wadm log to standard error, a
  host's workers and providers to ``STATE_DIR/logs/worker-N.log`` / ``provider-ID.log``
  (their standard streams, not rotated).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import IO, Any

from opentelemetry import trace

FORMATS = ("text", "json")
DESTINATIONS = ("stdout", "files")
FORMAT_ENV = "TRELLIS_LOG_FORMAT"
TO_ENV = "TRELLIS_LOG_TO"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

#: attributes every LogRecord has; anything else was passed with ``extra=`` and is kept
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the current span's trace and span ids."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
            "process": self.process, "pid": record.process,
        }
        ids = trace_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        return json.dumps(out, ensure_ascii=False)


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, or of the invocation served without a span
    (``tracing.pass_through``), as hex; None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    from .tracing import _passed  # the caller's traceparent, when this process makes no spans

    carrier = _passed.get()
    parent = carrier.get("traceparent") if carrier else None
    if parent:
        parts = parent.split("-")
        if len(parts) >= 3 and len(parts[1]) == 32 and len(parts[2]) == 16:
            return parts[1], parts[2]
    return None


def choice(value: str | None, env: str, allowed: tuple[str, ...], default: str) -> str:
    """``value``, else the variable ``env``, else ``default``; a ValueError naming the allowed ones."""
    chosen = (value or os.environ.get(env) or default).strip().lower()
    if chosen not in allowed:
        raise ValueError(f"{chosen!r} is not one of {', '.join(allowed)} ({env})")
    return chosen


def destination(value: str | None = None) -> str | None:
    """``stdout``, ``files``, or None (neither asked for: the default behaviour)."""
    if not (value or os.environ.get(TO_ENV)):
        return None
    return choice(value, TO_ENV, DESTINATIONS, "stdout")


def setup_logging(process: str, *, level: str | int | None = None, fmt: str | None = None, to: str | None = None,
                  log_dir: Path | None = None, stream: IO[str] | None = None) -> None:
    """Configure the root logger of this process (replacing its handlers).

    ``to`` (else ``TRELLIS_LOG_TO``): ``files`` writes ``log_dir/<process>.log`` (rotating);
    ``stdout`` writes ``stream`` (default: standard output); neither: standard error.
    """
    fmt = choice(fmt, FORMAT_ENV, FORMATS, "text")
    to = destination(to)
    handler: logging.Handler
    if to is None:
        handler = logging.StreamHandler(sys.stderr)
    elif to == "files":
        if log_dir is None:
            raise ValueError("--log-to files needs a state directory for its logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_dir / f"{process}.log", maxBytes=_int_env("TRELLIS_LOG_MAX_BYTES", DEFAULT_MAX_BYTES),
            backupCount=_int_env("TRELLIS_LOG_BACKUPS", DEFAULT_BACKUPS), encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)


def _int_env(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default
