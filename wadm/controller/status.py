"""An application's status as the API reports it: the scalers' view plus failed commands. Pure.

The scalers say how the lattice compares with the manifest (``deployed``,
``reconciling``, ``degraded`` when it runs but not as declared — a provider not
healthy, a provider waiting for the host that holds its data —, or ``failed``
when something cannot be planned, such as no eligible host). What they cannot see
is a command that was tried and failed,
e.g. a host that cannot fetch the image: the lattice then simply looks like it
is still waiting. So a component or link that is not yet deployed and has a
remembered failure is reported ``failed``, with the failure as its reason, and
so is the application.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trellis.interfaces.wadm_api import AppStatusReply, ComponentDetail, LinkDetail, PartProblem, StatusState

from ..manifest import Manifest
from ..observed import Observed
from ..scaler import AppState, AppStatus, plan, undeploy_status
from ..scaler.link import desired_links
from ..scaler.workload import ReconcilePass
from .failures import CommandFailure


def _state(s: AppState) -> StatusState:
    return StatusState(s.value)


def _with_failures(message: str, failures: Sequence[CommandFailure]) -> str:
    reasons = "; ".join(dict.fromkeys(f.describe() for f in failures))
    return f"{reasons}; {message}" if message else reasons


def deployed_status(app: Manifest, observed: Observed, failures: Sequence[CommandFailure], *,
                    shared_apps: Mapping[str, Manifest] | None = None,
                    last_pass: str | None = None, now: float | None = None,
                    planned: AppStatus | None = None) -> AppStatusReply:
    """Status of deployed `app` against `observed`, with remembered command failures (`now`: the
    observer's clock, see `trellis.wadm.scaler.plan`; `planned`: the scalers' status of `app` against
    `observed`, as a pass just planned it; else it is planned here)."""
    st: AppStatus = planned if planned is not None else plan(app, observed, shared_apps=shared_apps, now=now).status
    by_subject: dict[str, list[CommandFailure]] = {}
    for f in failures:
        by_subject.setdefault(f.subject, []).append(f)
    used: set[str] = set()

    components: list[ComponentDetail] = []
    problems: list[PartProblem] = []
    for c in st.components:
        state, message = _state(c.state), c.message
        found = by_subject.get(c.id, [])
        mine = [PartProblem(component=c.name, host_id=p.host_id, host_name=p.host_name or None, cause=p.cause)
                for p in c.problems]
        if found and c.state is not AppState.DEPLOYED:
            state, message = StatusState.FAILED, _with_failures(c.message, found)
            used.add(c.id)
            mine += [PartProblem(component=c.name, host_id=f.host_id, cause=f.describe()) for f in found]
        problems += mine
        components.append(ComponentDetail(name=c.name, id=c.id, kind=c.kind, scaler=c.scaler, status=state,
                                          desired=c.desired, running=c.running, message=message,
                                          local_state=c.local_state, data_host=c.data_host, problems=mine))

    subject_by_link = {
        d.describe(): "link:" + "/".join(d.link.identity)
        for d in desired_links(app, ReconcilePass(app.name, app.version), shared_apps)[0]
    }
    links: list[LinkDetail] = []
    for lk in st.links:
        state, message = _state(lk.state), lk.message
        subject = subject_by_link.get(lk.description, "")
        found = by_subject.get(subject, [])
        if found and lk.state is not AppState.DEPLOYED:
            state, message = StatusState.FAILED, _with_failures(lk.message, found)
            used.add(subject)
        links.append(LinkDetail(source=lk.source, target=lk.target, description=lk.description, status=state,
                                message=message))

    others = [f for f in failures if f.subject not in used and f.subject.startswith("config:")]
    failed = [f"{c.name}: {c.message}" for c in components if c.status is StatusState.FAILED]
    failed += [f"link {lk.description}: {lk.message}" for lk in links if lk.status is StatusState.FAILED]
    failed += [f"config {f.subject.removeprefix('config:')}: {f.describe()}" for f in others]
    degraded = [f"{c.name}: {c.message}" for c in components if c.status is StatusState.DEGRADED]
    if failed:
        state, message = StatusState.FAILED, "; ".join(failed + degraded)
    else:
        state, message = _state(st.state), st.message
    return AppStatusReply(name=app.name, version=app.version, status=state, message=message,
                          components=components, links=links, last_pass=last_pass, problems=problems)


def undeployed_status(name: str, observed: Observed, *, last_pass: str | None = None) -> AppStatusReply:
    """Status of an application that is not deployed: ``undeployed``, or ``reconciling`` while
    what it placed is being removed."""
    st = undeploy_status(name, observed)
    return AppStatusReply(name=name, version=None, status=_state(st.state), message=st.message,
                          last_pass=last_pass)
