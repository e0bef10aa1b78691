"""The worker zygote: ``python -P -m trellis.host.workers.zygote``, the parent of a host's workers.

A worker's Python, its modules and wasmtime's bindings, imported, are ~34 MiB of private memory
before it loads a single component, and each worker imported its own. This process imports them
once (what ``__main__`` imports, wasmtime-py patched), freezes them out of the collector's reach
(``gc.freeze``), and then forks each worker on the host's demand: the workers share those pages
with it and with each other until they write to them, and PSS splits what is shared (idle: two
workers and the zygote 39 MiB against 70 for two workers; docs/performance.md, "Peak memory,
third session"). Nothing here starts a thread before a fork: a worker makes its engine, threads
and event loop after it.

It speaks with its host over its stdin, a Unix socket (``forks.py`` is the host's side): the host
sends ``{"env": {...}}`` with three descriptors (the worker's stdin, stdout and stderr); the zygote
forks and answers ``{"pid": N}``; when a worker exits it says ``{"exited": N, "code": C}`` (C as
asyncio reports a child's: negative for a signal). It exits when that socket closes (its host is
gone); its workers then go with it (their death signal, and their own watch of their parent).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys

from trellis.host.runtime import wasmtime_patches
from trellis.host.workers import worker
from trellis.kit import procs


def _child(fds: list[int], env: dict[str, str], ctl: socket.socket, wake: tuple[int, int]) -> None:
    """In the forked worker: its descriptors, its environment, the worker's main; never returns."""
    code = 1
    try:
        ctl.close()
        for fd in wake:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        procs.die_with_parent()
        worker.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(ctl: socket.socket) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below through the wakeup pipe

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ctl.sendall(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")

    while True:
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 512)
            reap()
        if ctl.fileno() in readable:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 3)
            while msg and not msg.endswith(b"\n"):  # the rest of a long request
                more = ctl.recv(1 << 20)
                if not more:
                    break
                msg += more
            if not msg.endswith(b"\n") or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                return 0  # the host is gone (or spoke nonsense: it is not this process's to guess)
            request = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                _child(fds, request["env"], ctl, (wake_r, wake_w))
            for fd in fds:
                os.close(fd)
            ctl.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            reap()


def main() -> int:
    wasmtime_patches.apply()  # as __main__ does, once for every worker
    gc.collect()
    gc.freeze()  # the imported modules: no collection in a worker walks (and so writes to) them
    ctl = socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, not the socket
    return serve(ctl)


if __name__ == "__main__":
    sys.exit(main())
