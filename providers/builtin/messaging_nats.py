"""``builtin:messaging-nats``: ``wasmcloud:messaging`` on core NATS.

Two kinds of links:

* **component → provider** (``wasmcloud:messaging/consumer``): the component
  publishes (``publish``) and asks (``request``, one reply within its timeout).
* **provider → component** (``wasmcloud:messaging/handler``): the link's
  (source) config lists ``subscriptions``; every message on them is delivered
  to the component's ``handle-message``.

Delivery (handler links) is at most once, as core NATS is: a message published
while no instance of the provider is subscribed is lost, and a message whose
handler fails (an ``err``, a trap, no answer in ``handler_timeout_ms``) is
logged and counted, not redelivered. Every message is delivered once per link,
however many instances of the provider run: they subscribe in one queue group
per link (or in ``queue_group`` when the config names one). Up to
``max_concurrent`` messages per link are handled at once, so order is kept
only with ``max_concurrent=1``.

The NATS server is the lattice's unless ``url`` names another; on the
lattice's server, subjects under ``trellis.`` and ``$`` are refused (see
:mod:`._common.nats`). See docs/builtin-providers.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from trellis.providers.builtin._common import config as cfgs
from trellis.providers.builtin._common.calls import time_left
from trellis.providers.builtin._common.health import Prober, probe_each
from trellis.providers.builtin._common.links import LinkTable, LinkUnusable, NotLinked
from trellis.providers.builtin._common.nats import (
    NATS_KEYS,
    NatsTarget,
    close_nats,
    lattice_nats,
    nats_target,
    open_nats,
    reserved_subject,
)
from trellis.providers.builtin._common.shared import Shared
from trellis.providers.sdk import CallError, Context, Link, NatsBootstrap, Provider, export, run

log = logging.getLogger("trellis.providers.builtin.messaging_nats")

NAME = "messaging-nats"
CONSUMER = "wasmcloud:messaging/consumer"
HANDLER = "wasmcloud:messaging/handler"
HANDLE_MESSAGE = f"{HANDLER}.handle-message"
CONSUMER_KEYS = NATS_KEYS
HANDLER_KEYS = (*NATS_KEYS, "subscriptions", "queue_group", "max_concurrent", "handler_timeout_ms")
#: how long in-flight deliveries may finish when a handler link goes away
DRAIN_S = 2.0


class SubjectNotAllowed(Exception):
    """A subject a component may not use; the message says why."""


def check_subject(subject: str, target: NatsTarget, *, pattern: bool = False) -> str:
    """A subject to publish on (or, with ``pattern``, to subscribe to)."""
    problem = _subject_problem(subject, target.is_lattice, pattern)
    if problem is not None:
        raise SubjectNotAllowed(problem)
    return subject


@functools.lru_cache(maxsize=1024)
def _subject_problem(subject: str, on_lattice: bool, pattern: bool) -> str | None:
    """Why a subject may not be used, or None; remembered (components publish on a few subjects)."""
    tokens = subject.split(".")
    if not subject or any(not t or any(c.isspace() for c in t) for t in tokens):
        return f"invalid subject {subject!r}: dot-separated tokens without spaces"
    if not pattern and any(t in ("*", ">") for t in tokens):
        return f"cannot publish on {subject!r}: wildcards are for subscriptions"
    if pattern and ">" in tokens[:-1]:
        return f"invalid subscription {subject!r}: '>' must be the last token"
    if on_lattice and reserved_subject(subject):
        return (f"subject {subject!r} is reserved on the lattice's NATS server (trellis.>, $...); "
                "link the provider to another server with url=... to use it")
    return None


@dataclass(frozen=True)
class ConsumerLink:
    target: NatsTarget


@dataclass(frozen=True)
class HandlerSettings:
    target: NatsTarget
    subscriptions: tuple[str, ...]
    queue_group: str
    max_concurrent: int
    handler_timeout_s: float

    @classmethod
    def from_config(cls, cfg: Mapping[str, str], link: Link, lattice: NatsBootstrap | None,
                    lattice_name: str) -> HandlerSettings:
        cfgs.unknown_keys(cfg, HANDLER_KEYS, f"{NAME} handler link")
        target = nats_target(cfg, lattice)
        subs = cfgs.csv(cfg, "subscriptions")
        if not subs:
            raise cfgs.ConfigError("subscriptions is empty: list the subjects to deliver, e.g. "
                                   "subscriptions=orders.created,metrics.>")
        try:
            subs = tuple(check_subject(s, target, pattern=True) for s in subs)
        except SubjectNotAllowed as exc:
            raise cfgs.ConfigError(str(exc)) from None
        # one queue group per link: every instance of the provider shares it, so each message is handled once
        default_queue = f"trellis.{lattice_name}.{link.source_id}.{link.target}.{link.name}"
        return cls(target=target, subscriptions=subs,
                   queue_group=cfgs.text(cfg, "queue_group", default_queue) or default_queue,
                   max_concurrent=cfgs.integer(cfg, "max_concurrent", 16, minimum=1, maximum=10_000),
                   handler_timeout_s=cfgs.integer(cfg, "handler_timeout_ms", 30_000, minimum=1) / 1000)


class Delivery:
    """One handler link: its subscriptions and the deliveries in flight; owns every task it starts.

    :meth:`start` returns at once; a task connects and subscribes (retrying
    with backoff while the server is unreachable; once subscribed, the NATS
    client resubscribes by itself after a reconnect). Started from
    ``on_link_put``, so its tasks run where the provider may call components
    (tasks copy the SDK's calling context from where they are created).

    Per message: the NATS client hands it to :meth:`_on_message` (a callback,
    not an iterator: no task or wait set per message), which takes a slot and
    starts the one task that calls the component.
    """

    def __init__(self, provider: Provider, link: Link, settings: HandlerSettings,
                 connections: Shared[NatsTarget, Client]) -> None:
        self.provider = provider
        self.link = link
        self.settings = settings
        self.connections = connections
        self.subs: list[Any] = []
        self.runner: asyncio.Task[None] | None = None
        self.inflight: set[asyncio.Task[None]] = set()
        self.gate = asyncio.Semaphore(settings.max_concurrent)
        self.subscribed = asyncio.Event()
        self.stats = {"delivered": 0, "failed": 0}
        self.last_failure = ""

    def start(self) -> None:
        self.runner = asyncio.get_running_loop().create_task(self._run(), name=f"deliver to {self.link.target}")

    async def _subscribe(self) -> None:
        nc = await self.connections.get(self.settings.target)
        try:
            for subject in self.settings.subscriptions:
                self.subs.append(await nc.subscribe(subject, queue=self.settings.queue_group, cb=self._on_message))
            await nc.flush(timeout=5)
        except BaseException:
            await self._unsubscribe()
            raise

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._subscribe()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_failure = f"cannot subscribe: {exc.__class__.__name__}: {exc}"
                log.warning("%s: subscribing %s for %s failed (%s); retrying in %.1fs", NAME,
                            ", ".join(self.settings.subscriptions), self.link.target, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        self.subscribed.set()
        log.info("%s: delivering %s to %s (queue group %s)", NAME, ", ".join(self.settings.subscriptions),
                 self.link.target, self.settings.queue_group)

    async def _on_message(self, msg: Msg) -> None:
        """The subscription's callback (the NATS client awaits it before handing over the next message)."""
        await self.gate.acquire()  # back-pressure: NATS buffers (then drops) what waits here
        task = asyncio.get_running_loop().create_task(self._deliver(msg))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def _deliver(self, msg: Msg) -> None:
        wire = {"subject": msg.subject, "body": msg.data, "reply-to": msg.reply or None}
        try:
            result = await self.provider.call(self.link, HANDLE_MESSAGE, wire,
                                              timeout_s=self.settings.handler_timeout_s)
            if isinstance(result, dict) and "err" in result:
                self._failed(msg, f"handler returned err: {result['err']}")
            else:
                self.stats["delivered"] += 1
        except CallError as exc:
            self._failed(msg, f"{exc.kind or exc.code}: {exc.message}")
        except Exception as exc:
            self._failed(msg, f"{exc.__class__.__name__}: {exc}")
        finally:
            self.gate.release()

    def _failed(self, msg: Msg, why: str) -> None:
        self.stats["failed"] += 1
        self.last_failure = f"{msg.subject}: {why}"
        log.warning("%s: message on %s to %s (link %s) not handled, dropped: %s", NAME, msg.subject,
                    self.link.target, self.link.name, why)

    async def _unsubscribe(self) -> None:
        subs, self.subs = self.subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def stop(self) -> None:
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.gather(self.runner, return_exceptions=True)
        await self._unsubscribe()
        if self.inflight:
            _, pending = await asyncio.wait(set(self.inflight), timeout=DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class MessagingNats:
    """Connections shared by links with the same server; consumer links and handler deliveries."""

    def __init__(self) -> None:
        # the lattice's server over the runtime's own connection: a publish leaves with the call's reply
        self.connections: Shared[NatsTarget, Client] = Shared(
            f"{NAME} connection", lambda t: open_nats(t, f"trellis-{NAME}", share_lattice=True), close_nats)
        self.consumers: LinkTable[ConsumerLink] = LinkTable(f"{NAME} consumer", self._build_consumer,
                                                            self._drop_consumer)
        self.handlers: LinkTable[Delivery] = LinkTable(f"{NAME} handler", self._build_handler, self._drop_handler)
        self.prober = Prober(NAME, self._probe)
        self.provider: Provider | None = None
        self.lattice: NatsBootstrap | None = None
        self.lattice_name = "default"

    # --- link state ------------------------------------------------------------------

    async def _build_consumer(self, link: Link, config: dict[str, str]) -> ConsumerLink:
        cfgs.unknown_keys(config, CONSUMER_KEYS, f"{NAME} consumer link")
        target = nats_target(config, self.lattice)
        self.connections.attach(target)
        return ConsumerLink(target)

    async def _drop_consumer(self, state: ConsumerLink) -> None:
        await self.connections.detach(state.target)

    async def _build_handler(self, link: Link, config: dict[str, str]) -> Delivery:
        settings = HandlerSettings.from_config(config, link, self.lattice, self.lattice_name)
        assert self.provider is not None
        self.connections.attach(settings.target)
        delivery = Delivery(self.provider, link, settings, self.connections)
        delivery.start()
        return delivery

    async def _drop_handler(self, state: Delivery) -> None:
        await state.stop()
        await self.connections.detach(state.settings.target)

    # --- wasmcloud:messaging/consumer ------------------------------------------------

    async def _nc(self, ctx: Context) -> tuple[Client, NatsTarget]:
        target = (await self.consumers.for_call(ctx)).target
        nc = self.connections.opened(target)
        return (nc if nc is not None else await self.connections.get(target)), target

    @export(CONSUMER, "publish")
    async def publish(self, msg: dict[str, Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        try:
            nc, target = await self._nc(ctx)
            subject = check_subject(str(msg.get("subject", "")), target)
            reply = msg.get("reply-to")
            if reply:
                check_subject(str(reply), target)
            await nc.publish(subject, bytes(msg.get("body") or b""), reply=reply or "")
            return {"ok": None}
        except (SubjectNotAllowed, NotLinked, LinkUnusable) as exc:
            return {"err": str(exc)}
        except Exception as exc:
            log.warning("%s: publish from %s failed: %r", NAME, ctx.source, exc)
            return {"err": f"{exc.__class__.__name__}: {exc}"}

    @export(CONSUMER, "request")
    async def request(self, subject: str, body: bytes, timeout_ms: int, *, ctx: Context,
                      **kwargs: Any) -> dict[str, Any]:
        timeout = min(max(timeout_ms, 1) / 1000, time_left(ctx))
        try:
            nc, target = await self._nc(ctx)
            check_subject(subject, target)
            reply = await nc.request(subject, bytes(body), timeout=timeout)
            return {"ok": {"subject": reply.subject, "body": reply.data, "reply-to": reply.reply or None}}
        except (SubjectNotAllowed, NotLinked, LinkUnusable) as exc:
            return {"err": str(exc)}
        except NoRespondersError:
            return {"err": f"no responders on {subject!r}"}
        except (TimeoutError, NatsTimeoutError):
            return {"err": f"no reply on {subject!r} within {timeout * 1000:.0f} ms"}
        except Exception as exc:
            log.warning("%s: request from %s failed: %r", NAME, ctx.source, exc)
            return {"err": f"{exc.__class__.__name__}: {exc}"}

    # --- lifecycle -----------------------------------------------------------------------

    def _table(self, link: Link, provider_id: str) -> LinkTable[Any] | None:
        if link.target == provider_id and link.covers("wasmcloud", "messaging", "consumer"):
            return self.consumers
        if link.source_id == provider_id and link.covers("wasmcloud", "messaging", "handler"):
            return self.handlers
        return None

    async def on_start(self, *, info: Any, **kwargs: Any) -> None:
        self.lattice = lattice_nats(info)
        self.lattice_name = info.lattice
        self.consumers.base = dict(info.config)
        self.handlers.base = dict(info.config)

    async def on_link_put(self, link: Link, config: dict[str, str], *, info: Any, **kwargs: Any) -> None:
        table = self._table(link, info.provider_id)
        if table is not None:
            await table.put(link, config, info.provider_id)

    async def on_link_deleted(self, link: Link, *, info: Any, **kwargs: Any) -> None:
        table = self._table(link, info.provider_id)
        if table is not None:
            await table.delete(link, info.provider_id)

    async def on_config_updated(self, name: str, values: dict[str, str], *, info: Any, **kwargs: Any) -> None:
        await self.consumers.rebase(info.config)
        await self.handlers.rebase(info.config)

    async def _probe(self) -> tuple[bool, str]:
        targets = self.connections.keys()

        async def reach(t: NatsTarget) -> None:
            await (await self.connections.get(t)).flush(timeout=1)

        down = await probe_each([(t.describe(), partial(reach, t)) for t in targets])
        deliveries = [d for _, d in self.handlers.states()]
        delivered = sum(d.stats["delivered"] for d in deliveries)
        failed = sum(d.stats["failed"] for d in deliveries)
        notes = [f"{len(self.consumers)} consumer link(s), {len(deliveries)} subscriber link(s), "
                 f"{delivered} delivered, {failed} failed"]
        notes += [f"last failure {d.link.target}: {d.last_failure}" for d in deliveries if d.last_failure]
        notes += [f"link {k[0]}/{k[1]}: {e}" for t in (self.consumers, self.handlers) for k, e in t.errors().items()]
        return not down, "; ".join([*notes, *down])

    async def health(self, **kwargs: Any) -> tuple[bool, str]:
        return self.prober.answer()

    async def on_shutdown(self, grace_s: float, **kwargs: Any) -> None:
        await self.prober.close()
        await self.handlers.close_all()
        await self.consumers.close_all()
        await self.connections.close_all()


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    impl = MessagingNats()
    p = Provider(NAME, exports=[impl], imports=[HANDLER], description="wasmcloud:messaging on NATS")
    impl.provider = p
    p.on_start(impl.on_start)
    p.on_link_put(impl.on_link_put)
    p.on_link_deleted(impl.on_link_deleted)
    p.on_config_updated(impl.on_config_updated)
    p.health(impl.health)
    p.on_shutdown(impl.on_shutdown)
    return p


provider = build()

if __name__ == "__main__":
    run(provider)
