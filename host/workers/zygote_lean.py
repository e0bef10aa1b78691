"""The worker zygote at rest: what ``zygote.py`` ``exec``s itself into once it has forked its workers.

Run as a script (``python -I -S .../zygote_lean.py --role trellis.host.workers.zygote --ctl FD``), it
imports nothing but the standard library's few modules it uses: the full zygote's imported modules
(and, forked from ``trellis host``, the host's pages) are what its workers share with it while they
start, but once they run they have written to much of it and hold their own copies, and the zygote's
originals are memory nobody uses until a worker has to be forked again (the orders app under load:
~25 MiB of PSS, ~18 of them the zygote's alone). Same pid, so the workers are still its children: it
reports their exits as the full zygote does, and when the host asks for a fork it ``exec``s the full
zygote again (``python -P -m trellis.host.workers.zygote --ctl FD``), leaving the request in the
socket for it to read. The socket closing (the host is gone) ends it.
"""

# C modules only (``_signal``, ``_socket``, ``select``; no json, no enum), run with ``-I -S``: ~3 MiB
import _signal  # type: ignore[import-not-found]  # (signal.py would import enum)
import _socket
import os
import select
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ZYGOTE_MODULE = "trellis.host.workers.zygote"


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def watch_children(ctl: _socket.socket) -> tuple[int, int, "Callable[[], None]"]:
    """SIGCHLD wakes the zygote's ``select`` through a pipe: ``(wake_r, wake_w, reap)``, where ``reap``
    reports every exited child to the host as ``{"exited": PID, "code": CODE}`` lines (the full and the
    lean zygote alike)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ctl.sendall(b'{"exited": %d, "code": %d}\n' % (pid, os.waitstatus_to_exitcode(status)))

    return wake_r, wake_w, reap


def main(args: list[str]) -> int:
    fd = int(_opt(args, "--ctl") or "-1")
    ctl = _socket.socket(fileno=fd)
    wake_r, _, reap = watch_children(ctl)
    reap()  # (workers that exited while this process was exec'd)
    while True:
        readable, _, _ = select.select([fd, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 512)
            reap()
        if fd in readable:
            try:
                if not ctl.recv(1, _socket.MSG_PEEK):
                    return 0  # the host is gone
            except OSError:
                return 0
            # a fork wanted: the full zygote again, the request (and its descriptors) left for it to read
            _signal.set_wakeup_fd(-1)
            os.set_inheritable(fd, True)
            argv = [sys.executable, "-P", "-m", ZYGOTE_MODULE, "--ctl", str(fd)]
            lean_after = _opt(args, "--lean-after")
            if lean_after is not None:
                argv += ["--lean-after", lean_after]
            os.execv(sys.executable, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
