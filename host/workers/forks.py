"""The host's side of the worker zygote (``zygote.py``): workers forked from one pre-loaded parent.

:class:`Zygote` starts the zygote on the first worker's start (and again if it died) and asks it
for each worker; a :class:`ForkedWorker` stands in for the ``asyncio.subprocess.Process`` the pool
otherwise has (``pid``, ``stdin``, ``stdout``, ``returncode``, ``wait()``, ``kill()``,
``terminate()``), its exit code told by the zygote, its parent. When the zygote dies, its workers
die with it (their death signal): each is reported exited, and the pool restarts them as it
restarts any worker, through a new zygote. ``TRELLIS_WORKER_ZYGOTE=0``
(``tuning.process.worker_zygote``) starts each worker as a process of its own instead.

``trellis host`` calls :func:`prefork` first thing, before it starts a thread: the zygote is then
forked from the host's own process and shares its pages (``zygote.forked_main``); the pool's
first :class:`Zygote` takes that one up instead of starting ``python -m`` the zygote.
``TRELLIS_ZYGOTE_FROM_HOST=0`` (``tuning.process.zygote_from_host``) does not fork it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import IO, Any

from trellis.kit.procs import death_signal

log = logging.getLogger(__name__)

ZYGOTE_MODULE = "trellis.host.workers.zygote"
#: what an exit the zygote could not report (it died first) is given as
LOST = -9


class _Preforked:
    """The zygote forked from the host's process (:func:`prefork`), as the pool sees a process:
    ``pid``, ``returncode``, ``wait()``, ``kill()``. Its exit is watched through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd: int | None = None
        self._done: asyncio.Future[int] | None = None

    def _reap(self) -> None:
        try:
            got, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: its code is lost
            got, status = self.pid, 0
            self.returncode = LOST
        if got == 0:
            return
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(status)
        loop = asyncio.get_running_loop()
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._done is not None and not self._done.done():
            self._done.set_result(self.returncode)

    async def wait(self) -> int:
        if self.returncode is not None:
            return self.returncode
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            self._pidfd = os.pidfd_open(self.pid)
            asyncio.get_running_loop().add_reader(self._pidfd, self._reap)
            self._reap()  # (it may be gone already)
        return await asyncio.shield(self._done)

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


#: the zygote :func:`prefork` made, until a pool takes it up: (its process, our end of its socket)
_preforked: tuple[_Preforked, socket.socket] | None = None


def prefork(log_dir: Path | None, lean_after_s: float | None = None) -> bool:
    """Fork this host's worker zygote from this process, now, if nothing can make that unsafe: the
    process has one thread and no event loop. Everything imported so far is frozen first
    (``gc.freeze``: no collection here or in the children writes to those objects) and then shared by
    the host, the zygote and its workers. The zygote's stderr is ``log_dir/worker-zygote.log`` (None:
    ours); it goes lean after ``lean_after_s`` without a fork (``zygote.serve``). True: forked, for the
    pool's first :class:`Zygote` to take up. ``trellis host`` calls it unless ``tuning.process``'s
    ``worker_zygote`` or ``zygote_from_host`` is off."""
    global _preforked
    from . import zygote

    if _preforked is not None or threading.active_count() != 1 or not hasattr(os, "pidfd_open"):
        return False
    try:
        asyncio.get_running_loop()
        return False
    except RuntimeError:
        pass
    # the zygote shows an exec'd zygote's command line (tools find a host's workers by it): it must fit
    if not zygote.can_retitle(zygote.title()):
        return False
    stderr_path = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            stderr_path = str(log_dir / "worker-zygote.log")
        except OSError:  # the zygote's output goes to ours, as the host's does
            pass
    gc.collect()
    gc.freeze()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        ours.close()
        zygote.retitle(zygote.title())
        zygote.forked_main(theirs, stderr_path, lean_after_s)
    theirs.close()
    _preforked = (_Preforked(pid), ours)
    return True


def _take_preforked() -> tuple[_Preforked, socket.socket] | None:
    global _preforked
    taken, _preforked = _preforked, None
    if taken is not None and taken[0].returncode is not None:
        taken[1].close()
        return None
    return taken


class ForkedWorker:
    """A worker the zygote forked, as the pool sees a worker process."""

    def __init__(self, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()
            self.stdin.close()  # (its stdout ends by itself: the pipe's other end went with it)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The zygote process of one host's pool, started on demand."""

    def __init__(self, log_dir: Path | None, env: dict[str, str], lean_after_s: float | None = None) -> None:
        self.log_dir = log_dir
        self.env = env
        #: tuning.process.zygote_lean_after_s: the zygote exec's its lean copy after this long without a fork
        self.lean_after_s = lean_after_s
        self.proc: asyncio.subprocess.Process | _Preforked | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._listen: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._pid_reply: asyncio.Future[int] | None = None
        self.children: dict[int, ForkedWorker] = {}
        #: exits told before their fork's answer was taken up
        self._early: dict[int, int] = {}

    async def _start(self) -> None:
        preforked = _take_preforked()
        if preforked is not None:  # forked from this process by `trellis host` (prefork)
            self.proc, ours = preforked
            await self._adopt(self.proc, ours)
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            err = open(self.log_dir / "worker-zygote.log", "ab")  # noqa: SIM115 (closed once the child has it)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", ZYGOTE_MODULE,
                *(["--lean-after", repr(self.lean_after_s)] if self.lean_after_s is not None else []),
                stdin=theirs.fileno(), stdout=asyncio.subprocess.DEVNULL,
                stderr=err, env=self.env, preexec_fn=death_signal())
        finally:
            theirs.close()
            if err is not None:
                err.close()
        await self._adopt(self.proc, ours)

    async def _adopt(self, proc: asyncio.subprocess.Process | _Preforked, ours: socket.socket) -> None:
        self._sock = ours
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._listen = asyncio.get_running_loop().create_task(self._read(proc, self._reader, self._writer),
                                                              name="worker-zygote")

    async def _read(self, proc: asyncio.subprocess.Process | _Preforked, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if "pid" in msg and self._pid_reply is not None and not self._pid_reply.done():
                    self._pid_reply.set_result(int(msg["pid"]))
                elif "exited" in msg:
                    child = self.children.pop(int(msg["exited"]), None)
                    if child is not None:
                        child.exited(int(msg["code"]))
                    else:
                        self._early[int(msg["exited"])] = int(msg["code"])
        except (OSError, ValueError) as exc:
            log.warning("the worker zygote's channel failed: %r", exc)
        finally:
            writer.close()
            code = await proc.wait()
            if code != 0 and self.proc is proc:
                log.warning("the worker zygote exited with %s; its workers go with it", code)
            if self.proc is proc:
                self.proc = None
            if self._pid_reply is not None and not self._pid_reply.done():
                self._pid_reply.set_exception(OSError("the worker zygote exited"))
            for child in list(self.children.values()):
                child.exited(LOST)  # dies with it (its death signal): restarted by the pool
            self.children.clear()

    async def spawn(self, env: dict[str, str], stderr: Any) -> ForkedWorker:
        """A worker forked with ``env``; its stderr is ``stderr`` (a file, ``sys.stdout``, or None: ours)."""
        async with self._lock:
            if self.proc is None or self.proc.returncode is not None:
                await self._start()
            assert self._sock is not None
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_fd = stderr.fileno() if stderr is not None else sys.stderr.fileno()
            loop = asyncio.get_running_loop()
            self._pid_reply = loop.create_future()
            try:
                # one request at a time (the lock): its descriptors travel with its first bytes
                socket.send_fds(self._sock, [json.dumps({"env": env}).encode() + b"\n"], [in_r, out_w, err_fd])
            finally:
                os.close(in_r)
                os.close(out_w)
            try:
                pid = await asyncio.wait_for(self._pid_reply, 30.0)
            except BaseException:
                os.close(in_w)
                os.close(out_r)
                raise
        stdout = asyncio.StreamReader(limit=16 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(out_r, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                            os.fdopen(in_w, "wb", 0))
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        child = self.children[pid] = ForkedWorker(pid, stdin, stdout)
        if pid in self._early:
            child.exited(self._early.pop(pid))
            del self.children[pid]
        elif self.proc is None:  # the zygote died meanwhile, and this worker with it
            child.exited(LOST)
            del self.children[pid]
        return child

    async def close(self) -> None:
        proc = self.proc
        if self._writer is not None:
            self._writer.close()
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._listen is not None:
            await asyncio.gather(self._listen, return_exceptions=True)
