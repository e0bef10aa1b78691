"""Controller settings: grouped, documented, each default with its reason."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.policy import PolicySettings


class ControllerSettings(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    lattice: str = Field(default="default", description="lattice to manage (TRELLIS_LATTICE)")
    nats: NatsSettings = Field(default_factory=NatsSettings)
    controller_id: str | None = Field(default=None, description="this controller's id; generated when unset")
    policy: PolicySettings = Field(
        default_factory=PolicySettings, description="the policy service asked before writing links and answering "
        "put/deploy/undeploy/delete (TRELLIS_POLICY_*); off when it names no subject")

    # --- reconciliation -------------------------------------------------------------
    tick_s: float = Field(
        default=1.0, gt=0,
        description="every deployed app is reconciled at least this often, whatever events were missed "
        "(level-triggered); relevant events trigger a pass at once",
    )
    quiet_resync_s: float = Field(
        default=300.0, gt=0,
        description="an app found deployed by a pass that issued nothing is passed again on a tick only when "
        "the lattice view changed since (any change wakes every app at once), or after this long: a safety net "
        "only, since a pass against an unchanged view of a deployed app issues nothing (the view heals itself: "
        "a host's inventory digest and the watches' re-reads bring back what an event missed). Was 30 s: with "
        "25 idle apps the resync passes were most of an idle controller's CPU. Each app's comes up to a quarter "
        "of this later again, at random: apps that became quiet together are not passed again in one burst",
    )
    host_expiry_intervals: float = Field(
        default=3.0, gt=1,
        description="a host not heard from for this many of its own heartbeat intervals is gone "
        "(1 s heartbeats: about 3 s)",
    )
    ping_timeout_s: float = Field(default=1.0, gt=0, description="how long the initial ping waits for hosts to answer")
    store_retry_s: float = Field(
        default=60.0, ge=0,
        description="at start, how long opening the JetStream buckets (apps, lease, links, config) and starting "
        "their watches is retried while JetStream is unavailable (a cluster electing a leader answers 503, or "
        "nothing, for a few seconds); then the controller gives up with the reason",
    )

    # --- executing commands -------------------------------------------------------------
    start_timeout_s: float = Field(
        default=120.0, gt=0, description="wait for a component start/update (fetch + compile) or provider start; "
        "past it, a component start goes on being waited for while its host's heartbeats say it is still under "
        "way (a large component compiling on a busy machine), up to start_max_s")
    start_max_s: float = Field(
        default=1800.0, gt=0, description="the longest a component start/update is waited for while its host "
        "keeps reporting it under way; then it counts as failed and is retried with backoff")
    op_timeout_s: float = Field(default=60.0, gt=0, description="wait for scale and stop outcomes")
    store_timeout_s: float = Field(
        default=5.0, gt=0, description="wait for a link/config write to show up in the controller's own view")
    backoff_base_s: float = Field(default=0.5, gt=0, description="first retry delay after a failed command")
    backoff_max_s: float = Field(
        default=10.0, gt=0, description="longest retry delay: a fixed image is picked up within this long")

    # --- high availability ---------------------------------------------------------------
    lease_ttl_s: float = Field(
        default=3.0, ge=1.0,
        description="leader lease lifetime in JetStream KV; a dead leader is replaced after about this "
        "long (only the first controller to create the lease bucket sets it)",
    )
    lease_poll_s: float = Field(default=0.25, gt=0, description="how often a follower tries to take the lease")

    # --- secrets ----------------------------------------------------------------------------
    secrets_key_file: str | None = Field(
        default=None,
        description="an nkeys seed file (created 0600 when missing): with it this controller runs the secrets "
        "keyholder and signs the grants hosts show it; without it, manifests with secrets cannot be placed. "
        "Replicas of wadm share one file (TRELLIS_SECRETS_KEY)",
    )
