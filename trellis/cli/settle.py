"""Whether a deployed application has settled: `trellis app deploy --wait` asks its providers.

wadm reports an app ``deployed`` once its links are stored and its providers' hosts last said they
were healthy. A provider applies a link a moment later, and only then finds out what the link asks
of it (the http-server binds the link's port): its host notices at its next health check, and the
app turns ``degraded``. So before ``--wait`` reports ``deployed``, it asks every instance of the
app's providers for its health itself, once each instance has applied all its links; and it stops
waiting on a ``degraded`` app whose provider had run and no longer answers healthy (a provider still
starting, or restarting, may yet come up).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.wadm_api import AppStatusReply

HEALTH_TIMEOUT_S = 2.0
ON_THEIR_WAY = frozenset({"starting", "restarting", "stopping"})
"""Host-reported provider statuses that may still turn healthy on their own."""


@dataclass(frozen=True)
class Answer:
    """One provider instance's fresh health answer (None: it did not answer)."""

    component: str
    host: str
    host_status: str
    reply: dict[str, Any] | None

    def settled(self, links: int) -> bool:
        """It answered, with every link it should have applied and none being applied."""
        r = self.reply
        return r is not None and not r.get("applying", False) and r.get("links", links) == links

    @property
    def healthy(self) -> bool:
        return self.reply is not None and bool(self.reply.get("healthy", True))

    def describe(self) -> str:
        message = self.reply.get("message", "") if self.reply else ""
        return f"{self.component} on {self.host}: {message or 'unhealthy'}"


async def _ask(c: LatticeClient, provider_id: str, host_id: str) -> dict[str, Any] | None:
    from trellis.interfaces import subjects
    from trellis.interfaces.control import CtlReply

    try:
        msg = await c.connection.request(subjects.provider_health(c.lattice, provider_id, host_id), b"{}",
                                         timeout=HEALTH_TIMEOUT_S)
        reply = CtlReply.model_validate_json(msg.data)
    except Exception:  # no answer yet (starting, restarting): not settled
        return None
    if not reply.success:
        return None
    return reply.response if isinstance(reply.response, dict) else {}


async def settle(c: LatticeClient, st: AppStatusReply) -> AppStatusReply | None:
    """For an app wadm calls ``deployed`` or ``degraded``: the status to end ``--wait`` with, or None
    to keep waiting (a provider has not applied its links yet, or may still come up)."""
    from trellis.interfaces.wadm_api import StatusState

    names = {p.id: p.name for p in st.components if p.kind == "capability"}
    if not names:
        return st if st.status is StatusState.DEPLOYED else None
    hosts, links = await asyncio.gather(c.get_hosts(timeout_s=0.5), c.get_links())
    placed = [(h, p) for h in hosts for p in h.providers if p.id in names]
    replies = await asyncio.gather(*(_ask(c, p.id, h.id) for h, p in placed))
    answers = [(p.id, Answer(names[p.id], h.name or h.id, p.status, r))
               for (h, p), r in zip(placed, replies, strict=True)]
    want = {pid: sum(pid in (lk.source_id, lk.target) for lk in links) for pid in names}
    if not all(a.settled(want[pid]) for pid, a in answers):
        return None
    sick = [a for _, a in answers if not a.healthy]
    if st.status is StatusState.DEPLOYED:
        if not sick:
            return st
    elif not [a for a in sick if a.host_status not in ON_THEIR_WAY]:
        return None  # degraded while starting: it may come up yet
    why: dict[str, list[str]] = {}
    for pid, a in answers:
        if not a.healthy:
            why.setdefault(pid, []).append(a.describe())
    parts = [part if part.id not in why else part.model_copy(update={"status": StatusState.DEGRADED,
                                                                     "message": "; ".join(why[part.id])})
             for part in st.components]
    message = "; ".join(m for ms in why.values() for m in ms)
    return st.model_copy(update={"status": StatusState.DEGRADED, "message": message, "components": parts})
