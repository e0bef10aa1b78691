"""Subject naming for the lattice: the only place subjects are spelled.

Everything a lattice does lives under ``trellis.<lattice>.``, so two lattices on
one NATS server never see each other's traffic and one permission
(``trellis.<lattice>.>``) scopes a user to a lattice.

    trellis.<lattice>.ctl.host.ping                  scatter-gather: every host answers
    trellis.<lattice>.ctl.host.<host>.<op>           one host's control operations
    trellis.<lattice>.ctl.component.<host>.<op>      component lifecycle on a host
    trellis.<lattice>.ctl.provider.<host>.<op>       provider lifecycle on a host
    trellis.<lattice>.evt.<event_type>               events (host_started, host_heartbeat, ...)
    trellis.<lattice>.rpc.<target_id>                invocations of a component or provider
    trellis.<lattice>.tap.want                       watchers ask workers for spy records / traffic
    trellis.<lattice>.tap.spy.<component_id>         spy records of one component's calls
    trellis.<lattice>.tap.traffic.<host>             per-component traffic summaries of a host's workers
    trellis.<lattice>.stream.<process>.<token>       one end of a byte stream (interfaces/bytestream.py)
"""

from __future__ import annotations

import re

ROOT = "trellis"
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
#: ids of components/providers: subject-safe, also usable in KV keys
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class SubjectError(ValueError):
    """A name that cannot be used inside a subject."""


def check_lattice(name: str) -> str:
    if not _TOKEN.match(name or ""):
        raise SubjectError(
            f"invalid lattice name {name!r}: use letters, digits, '-' and '_' only"
        )
    return name


def check_id(kind: str, value: str) -> str:
    """Validate a host, component or provider id for use in subjects and keys."""
    if not _ID.match(value or ""):
        raise SubjectError(
            f"invalid {kind} id {value!r}: use 1-128 letters, digits, '-' and '_'"
        )
    return value


def lattice_prefix(lattice: str) -> str:
    return f"{ROOT}.{check_lattice(lattice)}"


# --- control interface -------------------------------------------------------

def host_ping(lattice: str) -> str:
    return f"{lattice_prefix(lattice)}.ctl.host.ping"


def host_op(lattice: str, host_id: str, op: str) -> str:
    return f"{lattice_prefix(lattice)}.ctl.host.{check_id('host', host_id)}.{op}"


def host_ops_wildcard(lattice: str, host_id: str) -> str:
    return f"{lattice_prefix(lattice)}.ctl.host.{check_id('host', host_id)}.>"


def component_op(lattice: str, host_id: str, op: str) -> str:
    return f"{lattice_prefix(lattice)}.ctl.component.{check_id('host', host_id)}.{op}"


def provider_op(lattice: str, host_id: str, op: str) -> str:
    return f"{lattice_prefix(lattice)}.ctl.provider.{check_id('host', host_id)}.{op}"


def ctl_wildcard_for_host(lattice: str, host_id: str) -> list[str]:
    """Every control subject one host must answer."""
    p = lattice_prefix(lattice)
    h = check_id("host", host_id)
    return [
        f"{p}.ctl.host.ping",
        f"{p}.ctl.host.{h}.>",
        f"{p}.ctl.component.{h}.>",
        f"{p}.ctl.provider.{h}.>",
    ]


def op_of(subject: str) -> str:
    """The operation named by a per-host control subject (the tokens after the host id)."""
    parts = subject.split(".")
    # trellis.<lattice>.ctl.<area>.<host>.<op...>
    if len(parts) < 6:
        return parts[-1]
    return ".".join(parts[5:])


def area_of(subject: str) -> str:
    parts = subject.split(".")
    return parts[3] if len(parts) > 3 else ""


# --- events ------------------------------------------------------------------

def event(lattice: str, event_type: str) -> str:
    return f"{lattice_prefix(lattice)}.evt.{event_type}"


def events_wildcard(lattice: str) -> str:
    return f"{lattice_prefix(lattice)}.evt.>"


# --- invocations -------------------------------------------------------------

def rpc(lattice: str, target_id: str) -> str:
    return f"{lattice_prefix(lattice)}.rpc.{check_id('target', target_id)}"


def rpc_queue_group(target_id: str) -> str:
    return f"rpc-{target_id}"


# --- taps: what watchers (`trellis spy`, the dashboard) ask the workers for ------------

def tap_want(lattice: str) -> str:
    """Broadcast: a watcher asks every worker for spy records or traffic (interfaces/taps.py)."""
    return f"{lattice_prefix(lattice)}.tap.want"


def tap_spy(lattice: str, component_id: str) -> str:
    return f"{lattice_prefix(lattice)}.tap.spy.{check_id('component', component_id)}"


def tap_traffic(lattice: str, host_id: str) -> str:
    return f"{lattice_prefix(lattice)}.tap.traffic.{check_id('host', host_id)}"


def tap_traffic_wildcard(lattice: str) -> str:
    return f"{lattice_prefix(lattice)}.tap.traffic.*"


# --- byte streams (interfaces/bytestream.py) -------------------------------------------

def stream_prefix(lattice: str, process: str) -> str:
    """The subject prefix of one process's stream ends (it subscribes to ``<prefix>.*``)."""
    return f"{lattice_prefix(lattice)}.stream.{check_id('process', process)}"


# --- JetStream names ---------------------------------------------------------

def bucket(lattice: str, what: str) -> str:
    """KV / object-store bucket name for a lattice (``TRELLIS_<lattice>_<what>``)."""
    return f"TRELLIS_{check_lattice(lattice)}_{what}"


# --- provider instances ------------------------------------------------------

def provider_ping(lattice: str, provider_id: str) -> str:
    """Every instance of a provider answers (scatter-gather)."""
    return f"{lattice_prefix(lattice)}.prov.{check_id('provider', provider_id)}.ping"


def provider_health(lattice: str, provider_id: str, host_id: str) -> str:
    """The instance of a provider that one host runs answers its health check."""
    return (f"{lattice_prefix(lattice)}.prov.{check_id('provider', provider_id)}."
            f"{check_id('host', host_id)}.health")


# --- wadm (the deployment controller) -------------------------------------------

def provider_metrics(lattice: str, provider_id: str, host_id: str) -> str:
    """The instance of a provider that one host runs answers with its metrics (a series list, JSON)."""
    return (f"{lattice_prefix(lattice)}.prov.{check_id('provider', provider_id)}."
            f"{check_id('host', host_id)}.metrics")


def wadm_metrics(lattice: str) -> str:
    """Scatter-gather: every wadm controller answers with its metrics (a series list, JSON)."""
    return f"{lattice_prefix(lattice)}.wadm.metrics"


def wadm_api(lattice: str, op: str) -> str:
    """The wadm API: request/reply, answered by the leading controller (queue group `wadm-api`)."""
    return f"{lattice_prefix(lattice)}.wadm.api.{op}"


def wadm_api_wildcard(lattice: str) -> str:
    return f"{lattice_prefix(lattice)}.wadm.api.>"


def wadm_ping(lattice: str) -> str:
    """Scatter-gather: every wadm controller (leader and followers) answers with its role."""
    return f"{lattice_prefix(lattice)}.wadm.ping"


WADM_API_QUEUE = "wadm-api"


# --- secrets ------------------------------------------------------------------------

def secrets_api(lattice: str, backend: str, op: str) -> str:
    """A secrets backend's API (``xkey``, ``put``, ``del``, ``list``, ``get``), answered by its keyholder."""
    return f"{lattice_prefix(lattice)}.secrets.{check_id('backend', backend)}.{op}"


SECRETS_QUEUE = "secrets-keyholder"
