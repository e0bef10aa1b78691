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

``trellis host`` forks it from its own process before it starts a thread (:func:`forked_main`,
``forks.prefork``), so that the zygote and the workers also share the host's pages: Python, pydantic,
nats-py, the interfaces, imported once for all four processes (idle: host with zygote and two
workers 60 MiB against 75). It then carries the command line above (:func:`retitle`), as tools
that find a host's workers by their command line expect. A zygote started again (the first one
died) is ``python -P -m`` this module, as any host without that fork has.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys

from trellis.host.workers import zygote_lean
from trellis.kit import procs


def _preload() -> None:
    """What every worker imports, once (wasmtime-py patched), then out of the collector's reach
    (``gc.freeze``): no collection in a worker walks, and so writes to, these objects. Not at this
    module's import: a host imports it to fork the zygote and loads no wasmtime itself."""
    from trellis.host.runtime import wasmtime_patches
    from trellis.host.workers import worker  # noqa: F401 (imported here, once for every worker)

    wasmtime_patches.apply()  # as __main__ does, once for every worker
    gc.collect()
    gc.freeze()


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
        from trellis.host.workers import worker  # (imported by _preload)

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


def _lean(ctl: socket.socket, lean_after_s: float) -> None:
    """Become ``zygote_lean.py`` (same pid: the workers stay its children); never returns."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.set_wakeup_fd(-1)
    fd = ctl.detach()
    os.set_inheritable(fd, True)
    lean = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote_lean.py")
    os.execv(sys.executable, [sys.executable, "-I", "-S", lean, "--role", "trellis.host.workers.zygote",
                              "--ctl", str(fd), "--lean-after", repr(lean_after_s)])


def serve(ctl: socket.socket, lean_after_s: float | None = None) -> int:
    """Fork a worker for each request of the host; with ``lean_after_s``, once that long has gone by
    without one, ``exec`` the lean zygote (``zygote_lean.py``), which comes back here for the next."""
    wake_r, wake_w, reap = zygote_lean.watch_children(ctl)  # SIGCHLD wakes the select below
    reap()  # (workers that exited while the lean zygote was exec'ing this one)
    forked = False  # the lean one's clock starts with the first fork: a host may take long to ask for it
    while True:
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [], lean_after_s if forked else None)
        if not readable and lean_after_s is not None:
            os.close(wake_r)
            os.close(wake_w)
            _lean(ctl, lean_after_s)
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
            forked = True
            reap()


def main(args: list[str]) -> int:
    """``[--ctl FD] [--lean-after S]``: the host's socket is FD (default: stdin, replaced by /dev/null)."""
    _preload()
    if "--ctl" in args:
        ctl = socket.socket(fileno=int(args[args.index("--ctl") + 1]))
    else:
        ctl = socket.socket(fileno=os.dup(0))
        os.close(0)
        os.set_inheritable(os.open(os.devnull, os.O_RDONLY), True)  # fd 0 again (and after an exec), not the socket
    lean_after_s = float(args[args.index("--lean-after") + 1]) if "--lean-after" in args else None
    return serve(ctl, lean_after_s)


def title() -> list[str]:
    """The command line a zygote shows: the one an exec'd zygote has."""
    return [sys.executable, "-P", "-m", "trellis.host.workers.zygote"]


def _args_room() -> int:
    """Bytes of this process's own command line (``arg_end - arg_start``, /proc/self/stat); 0: unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: the 48th and 49th fields
    except (OSError, IndexError, ValueError):
        return 0
    return end - start if start > 0 else 0


def _args_text(args: list[str]) -> bytes:
    return b"\0".join(a.encode() for a in args) + b"\0"


def can_retitle(args: list[str]) -> bool:
    """Whether :func:`retitle` can show ``args``: they fit where this process's own arguments are."""
    return 0 < len(_args_text(args)) <= _args_room()


def retitle(args: list[str]) -> bool:
    """Show ``args`` as this process's command line (``/proc/self/cmdline``) by writing them over
    its own, padded with NULs: only when they fit (:func:`can_retitle`). False: nothing changed."""
    room = _args_room()
    text = _args_text(args)
    if not 0 < len(text) <= room:
        return False
    with open("/proc/self/stat", "rb") as f:
        start = int(f.read().rsplit(b")", 1)[1].split()[45])
    ctypes.memmove(start, text.ljust(room, b"\0"), room)
    return True


def forked_main(ctl: socket.socket, stderr_path: str | None, lean_after_s: float | None = None) -> None:
    """In a child forked from ``trellis host`` before it started a thread (``forks.prefork``): become
    the zygote, talking over ``ctl``, its stderr ``stderr_path`` (None: the host's); never returns."""
    code = 1
    try:
        procs.die_with_parent()
        import logging

        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger):
                logger.handlers.clear()  # the host's: a worker sets up its own
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        if stderr_path is not None:
            err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(err, 2)
            os.close(err)
        os.close(null)
        try:  # its name (ps, psutil's name()) as an exec'd zygote's
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(15, os.path.basename(sys.executable).encode()[:15], 0, 0, 0)  # PR_SET_NAME
        except (OSError, AttributeError):
            pass
        _preload()  # what the host had imported it froze before the fork (forks.prefork)
        code = serve(ctl, lean_after_s)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
