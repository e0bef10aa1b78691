"""Finding what stalls an event loop: a watchdog thread that logs where the loop's thread was.

``TRELLIS_LOOP_WATCH_S=0.5`` in a host's environment (``trellis host``, ``trellis up``) starts
one :class:`LoopWatch` on its loop: the loop marks each turn with a timer every
``threshold_s / 4``; a thread looks at the mark as often, and when the loop has not run for
``threshold_s`` it logs the loop thread's stack (what it was running — a slow callback —
or, with the thread not on the CPU, waiting for the GIL or the OS's scheduler), once per
stall, and when the loop runs again how long the stall lasted and how much CPU the loop's
thread and the whole process used meanwhile (low: it was not scheduled or waited for the
GIL; high: the loop ran something too long). Off by default: a diagnosis tool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger("trellis.loopwatch")

ENV = "TRELLIS_LOOP_WATCH_S"


def _thread_cpu_s(tid: int) -> float:
    """CPU seconds of one thread of this process (user + system), from /proc."""
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _thread_state(tid: int) -> str:
    """Where the kernel has a thread of this process: its state (R runnable/running, S asleep, D in
    uninterruptible I/O), what it waits in (wchan) and the system call it is in (number, args)."""
    parts = []
    for name in ("stat", "wchan", "syscall"):
        try:
            with open(f"/proc/self/task/{tid}/{name}", "rb") as f:
                raw = f.read().decode(errors="replace").strip()
        except OSError:
            continue
        if name == "stat":
            raw = raw.rsplit(")", 1)[1].split()[0]
        elif name == "syscall":
            raw = " ".join(raw.split()[:3])
        parts.append(f"{name} {raw}")
    return ", ".join(parts)


class LoopWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float, name: str = "loop") -> None:
        self.loop = loop
        self.threshold_s = threshold_s
        self.name = name
        self.interval_s = max(threshold_s / 4, 0.01)
        self.mark = time.monotonic()
        self.stalls = 0
        self.longest_s = 0.0
        self._thread_ident = 0
        self._native_id = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """From the loop's thread."""
        self._thread_ident = threading.get_ident()
        self._native_id = threading.get_native_id()
        self._beat()
        self._watcher = threading.Thread(target=self._watch, name=f"loopwatch-{self.name}", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self) -> None:
        self.mark = time.monotonic()
        self._timer = self.loop.call_later(self.interval_s, self._beat)

    def _watch(self) -> None:
        stalled_at = 0.0  # the mark of the stall being reported, 0 when none
        cpu0 = proc0 = 0.0
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            mark = self.mark
            if stalled_at and mark != stalled_at:  # the loop ran again
                lasted = mark - stalled_at
                self.longest_s = max(self.longest_s, lasted)
                log.warning("%s: the event loop did not run for %.2f s; meanwhile its thread used %.2f CPU-s, "
                            "the process %.2f", self.name, lasted, _thread_cpu_s(self._native_id) - cpu0,
                            time.process_time() - proc0)
                stalled_at = 0.0
            if not stalled_at and now - mark > self.threshold_s:
                stalled_at = mark
                self.stalls += 1
                cpu0, proc0 = _thread_cpu_s(self._native_id), time.process_time()
                frame = sys._current_frames().get(self._thread_ident)
                stack = "".join(traceback.format_stack(frame, limit=25)) if frame is not None else "(gone)\n"
                log.warning("%s: the event loop has not run for %.2f s; its thread (%s) is at:\n%s", self.name,
                            now - mark, _thread_state(self._native_id), stack.rstrip())


def from_env(loop: asyncio.AbstractEventLoop, name: str) -> LoopWatch | None:
    """A started :class:`LoopWatch` when ``TRELLIS_LOOP_WATCH_S`` is set (seconds), else None."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        threshold = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds: no loop watch", ENV, raw)
        return None
    if threshold <= 0:
        return None
    watch = LoopWatch(loop, threshold, name)
    watch.start()
    log.info("%s: watching the event loop for stalls over %.2f s", name, threshold)
    return watch
