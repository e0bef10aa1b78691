"""Leader election: one lease in JetStream KV, so exactly one controller acts at a time.

Bucket ``TRELLIS_<lattice>_wadm_lease`` has a max age (TTL) of a few seconds and
one key, ``leader``, whose value names the holder. The lease is:

* **taken** with *create*, which only succeeds when the key does not exist: when
  nobody holds it, when the holder let it go, or when the holder stopped renewing
  and JetStream expired the key after the TTL;
* **renewed** every TTL/3 with an *update* checked against the revision the holder
  last wrote; any other write in between makes the renewal fail and the holder
  steps down at once;
* **taken back** at once, with an update checked against its last revision, by a holder
  that stepped down because its own renewal came too late (its process stalled for a
  moment: a loaded machine) while nobody else wrote the key: the check proves no other
  controller held it meanwhile, so there is never a second controller, and the lattice is
  not left without one until the holder's own key expires;
* **given up** on a clean shutdown with a revision-checked delete, so a follower
  takes over within one poll instead of one TTL.

A holder also steps down by itself once ``TTL - safety`` has passed since it
*sent* its last successful renewal, so even cut off from NATS it stops acting
before the key can expire and someone else can take it (the server counts the
TTL from when it stored that renewal, which is later).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from trellis.interfaces import subjects
from trellis.interfaces.cancel import stop_if_cancelled
from trellis.interfaces.store import StoreSettings

from .app_store import open_bucket
from .records import now_iso

log = logging.getLogger(__name__)

LEASE_BUCKET = "wadm_lease"
LEASE_KEY = "leader"
_WRONG_LAST_SEQUENCE = 10071


class Lease:
    def __init__(self, nc: Client, lattice: str, holder: str, *, ttl_s: float = 3.0, poll_s: float = 0.25,
                 settings: StoreSettings | None = None,
                 on_change: Callable[[bool], None] | None = None, retry_s: float = 0.0) -> None:
        self.nc = nc
        self.lattice = lattice
        self.holder = holder
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.settings = settings or StoreSettings.from_env()
        self.on_change = on_change
        self.retry_s = retry_s
        """How long `open` retries while JetStream is unavailable."""
        self._kv: KeyValue | None = None
        self._revision = 0
        self._valid_until = 0.0  # loop time until which we may act
        self._held = False
        self.leader: str | None = None
        """Who holds the lease, as last seen (ourselves included)."""
        self.since: str | None = None
        """When we took the lease (ISO 8601), while we hold it."""
        self.regained = 0
        """How often the lease was taken back after a renewal came too late (a stall)."""

    @property
    def held(self) -> bool:
        """Whether this controller may act now."""
        return self._held and asyncio.get_running_loop().time() < self._valid_until

    @property
    def safety_s(self) -> float:
        return min(1.0, self.ttl_s / 4)

    async def open(self) -> None:
        self._kv = await open_bucket(self.nc, subjects.bucket(self.lattice, LEASE_BUCKET),
                                     f"Trellis wadm leader lease of lattice {self.lattice}", self.settings,
                                     ttl_s=self.ttl_s, retry_s=self.retry_s)
        try:  # the first creator's TTL is the one that counts
            ttl = (await self._kv.status()).ttl
            if ttl and abs(ttl - self.ttl_s) > 1e-3:
                log.info("lease TTL is %.1fs (set by whoever created the bucket), not %.1fs", ttl, self.ttl_s)
                self.ttl_s = float(ttl)
        except Exception as exc:  # informational only
            log.debug("could not read the lease bucket's TTL: %r", exc)

    def _value(self, taken_at: str) -> bytes:
        return json.dumps({"holder": self.holder, "taken_at": taken_at, "ttl_s": self.ttl_s}).encode()

    def _set(self, held: bool, taken_at: str | None = None, *, stepping_down: bool = False) -> None:
        """Record holding the lease or not; ``stepping_down``: given up on purpose (shutdown)."""
        if held == self._held:
            return
        self._held = held
        if held:
            self.since = taken_at or now_iso()
            log.info("controller %s is now the leader of lattice %s", self.holder, self.lattice)
        else:
            self.since = None
            (log.info if stepping_down else log.warning)(
                "controller %s is no longer the leader of lattice %s", self.holder, self.lattice)
        if self.on_change is not None:
            self.on_change(held)

    async def run(self) -> None:
        """Take and keep the lease until cancelled (then give it up)."""
        assert self._kv is not None, "open() first"
        loop = asyncio.get_running_loop()
        try:
            while True:
                stop_if_cancelled()
                if self._held:
                    await self._renew(loop)
                    if self._held:
                        await asyncio.sleep(min(self.ttl_s / 3, max(0.0, self._valid_until - loop.time())))
                        if loop.time() >= self._valid_until:
                            log.warning("lease not renewed in time: stepping down")
                            self._set(False)
                        continue
                await self._try_take(loop)
                if not self._held:
                    await asyncio.sleep(self.poll_s)
        finally:
            await self._release()

    async def _try_take(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._kv is not None
        sent = loop.time()
        taken_at = now_iso()
        if self._revision and await self._regain(loop, sent, taken_at):
            return
        try:
            async with asyncio.timeout(self.ttl_s / 3):  # (not wait_for: on 3.11 it can swallow a cancel)
                self._revision = await self._kv.create(LEASE_KEY, self._value(taken_at))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
            await self._read_leader()  # held by someone else
            return
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.debug("could not try the lease: %r", exc)
            return
        self._valid_until = sent + self.ttl_s - self.safety_s
        self.leader = self.holder
        self._set(True, taken_at)

    async def _regain(self, loop: asyncio.AbstractEventLoop, sent: float, taken_at: str) -> bool:
        """After stepping down because a renewal came too late (this process stalled: its loop,
        or its NATS connection, did not run for a while), take the lease back at once if nobody
        wrote it since our last write: an update checked against that revision succeeds only
        then, so no other controller acted meanwhile. Without it, the lattice had no controller
        until our own key expired (up to a TTL). True when regained."""
        assert self._kv is not None
        try:
            async with asyncio.timeout(self.ttl_s / 3):
                self._revision = await self._kv.update(LEASE_KEY, self._value(taken_at), last=self._revision)
        except nats.js.errors.APIError:  # another holder wrote it, or it expired (then `create` takes it)
            self._revision = 0
            return False
        except (TimeoutError, nats.errors.Error, OSError) as exc:  # NATS away: try again next time
            log.debug("could not take the lease back: %r", exc)
            return False
        self._valid_until = sent + self.ttl_s - self.safety_s
        self.leader = self.holder
        self.regained += 1
        log.warning("controller %s took the lease back (nobody held it meanwhile)", self.holder)
        self._set(True, taken_at)
        return True

    async def _renew(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._kv is not None
        sent = loop.time()
        try:
            async with asyncio.timeout(self.ttl_s / 3):
                self._revision = await self._kv.update(LEASE_KEY, self._value(self.since or now_iso()),
                                                       last=self._revision)
        except nats.js.errors.APIError as exc:
            if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError) or exc.err_code == _WRONG_LAST_SEQUENCE:
                log.warning("lease taken by someone else (%s)", exc)
                self._revision = 0  # not ours to take back
                self._set(False)
                await self._read_leader()
                return
            # e.g. 503 while the lease stream elects a leader: nothing was written; like a timeout,
            # keep acting until the lease we hold runs out
            log.warning("lease renewal failed: %r", exc)
            if loop.time() >= self._valid_until:
                self._set(False)
            return
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning("lease renewal failed: %r", exc)
            if loop.time() >= self._valid_until:
                self._set(False)
            return
        self._valid_until = sent + self.ttl_s - self.safety_s

    async def _read_leader(self) -> None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(LEASE_KEY)
            self.leader = str(json.loads(entry.value or b"{}").get("holder") or "") or None
        except Exception:
            self.leader = None

    async def _release(self) -> None:
        was = self._held
        self._set(False, stepping_down=True)
        if not was or self._kv is None or self.nc.is_closed:
            return
        try:
            async with asyncio.timeout(2.0):
                await self._kv.delete(LEASE_KEY, last=self._revision)
            log.info("controller %s gave up the lease", self.holder)
        except Exception as exc:  # expired or taken already; it lapses by itself anyway
            log.debug("lease not released: %r", exc)
