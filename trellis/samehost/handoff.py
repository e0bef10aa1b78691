"""Handing accepted connections from a host's HTTP front to the worker process that serves them.

When ``builtin:http-server`` runs on the same host as the component a listener
routes to, a request need not travel provider → NATS → worker and back: the
provider accepts the TCP connection and passes the socket itself (``SCM_RIGHTS``)
to a worker serving the listener's components, which then reads the requests,
calls the component in process and writes the responses (``host/workers/handoff.py``).
The provider keeps the listener, its config and its links; it tells the worker
when a listener's routes change or it closes, and a worker whose provider goes
away closes the connections it was handed once their answers are written.

The channel: one Linux abstract Unix socket (``SOCK_SEQPACKET``: messages keep
their bounds, no files to clean up, gone with the process) per worker, named by
:func:`worker_address`; peers of another user are refused (``SO_PEERCRED``).
Messages are msgpack maps with an ``op``:

worker → provider
    ``{"op": "serving", "components": [...]}``: the components this worker takes
    calls for, sent on connect and on every change.
provider → worker
    ``{"op": "listener", "id", "address", "routes", "settings", "source"}``: a
    listener's routes (sent before its first connection, and again on a change);
    ``{"op": "conn", "listener"}`` with one descriptor: an accepted connection;
    ``{"op": "close", "id"}``: the listener closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def available() -> bool:
    """Abstract Unix sockets and descriptor passing: Linux only."""
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED") and hasattr(socket, "send_fds")


#: an abstract name's bytes after the leading NUL (``sun_path`` is 108 bytes)
_NAME_MAX = 107


def abstract_address(lattice: str, host_id: str, what: str) -> str:
    """The abstract Unix socket name for ``what`` of one host (per network namespace):
    ``trellis/LATTICE/HOST/WHAT`` when it fits, else the same name's digest (a host id alone
    is 56 characters, so a long lattice or provider id would not fit)."""
    name = f"trellis/{lattice}/{host_id}/{what}"
    if len(name.encode()) > _NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:40]
        name = f"trellis/{digest}/{what}"[:_NAME_MAX]
    return "\0" + name


def worker_address(lattice: str, host_id: str, index: int) -> str:
    """The abstract socket name of one worker of one host."""
    return abstract_address(lattice, host_id, f"worker-{index}")


def same_user(sock: socket.socket) -> bool:
    """Whether the peer of a connected Unix socket runs as this process's user."""
    try:
        _, uid, _ = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    except OSError:
        return False
    return uid == os.getuid()


def listen(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind(address)
        sock.listen(16)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def connect(address: str) -> socket.socket:
    """Connected, non-blocking; raises OSError (nobody listens there)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(address)
        if not same_user(sock):
            raise PermissionError(f"the peer at {address[1:]!r} runs as another user")
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Channel:
    """Messages (and descriptors) over one connected SEQPACKET socket, on the running loop.

    ``on_message(message, fds)`` owns the descriptors it is given; ``on_close()`` is called
    once, when either side closes or the socket fails.
    """

    def __init__(self, sock: socket.socket, on_message: Callable[[dict[str, Any], list[int]], None],
                 on_close: Callable[[], None]) -> None:
        self.sock = sock
        self.on_message = on_message
        self.on_close = on_close
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> bool:
        """Queue one message; False when it cannot go now (buffer full, or the channel is closed)."""
        if self.closed:
            return False
        data = msgpack.packb(message, use_bin_type=True)
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            log.debug("handoff channel failed: %r", exc)
            self.close()
            return False

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data:  # the peer closed (no message here is ever empty)
                close_fds(fds)
                self.close()
                return
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                close_fds(fds)
                log.warning("handoff: a message was truncated; dropped")
                continue
            try:
                message = msgpack.unpackb(data, raw=False)
                if not isinstance(message, dict):
                    raise ValueError("not a map")
            except Exception:
                close_fds(fds)
                log.warning("handoff: a malformed message was dropped")
                continue
            try:
                self.on_message(message, fds)
            except Exception:
                log.exception("handoff: handling %r failed", message.get("op"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, RuntimeError):  # the loop is closed
            pass
        self.sock.close()
        self.on_close()


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
