"""The event envelope (CloudEvents 1.0 shape, JSON) and the event types."""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any

from pydantic import BaseModel


class EventType:
    HOST_STARTED = "host_started"
    HOST_STOPPED = "host_stopped"
    HOST_HEARTBEAT = "host_heartbeat"
    LABELS_CHANGED = "labels_changed"
    COMPONENT_SCALED = "component_scaled"
    COMPONENT_SCALE_FAILED = "component_scale_failed"
    PROVIDER_STARTED = "provider_started"
    PROVIDER_STOPPED = "provider_stopped"
    PROVIDER_START_FAILED = "provider_start_failed"
    HEALTH_CHECK_PASSED = "health_check_passed"
    HEALTH_CHECK_FAILED = "health_check_failed"
    LINKDEF_SET = "linkdef_set"
    LINKDEF_DELETED = "linkdef_deleted"
    CONFIG_SET = "config_set"
    CONFIG_DELETED = "config_deleted"
    APP_STATUS_CHANGED = "app_status_changed"
    """wadm: an application's status changed (``data``: the `trellis.interfaces.wadm_api.AppStatusReply`)."""


class Event(BaseModel):
    specversion: str = "1.0"
    id: str
    type: str
    source: str
    time: str
    datacontenttype: str = "application/json"
    data: dict[str, Any] = {}

    @classmethod
    def new(cls, type: str, source: str, data: dict[str, Any] | None = None) -> Event:
        return cls(
            id=uuid.uuid4().hex,
            type=type,
            source=source,
            time=_dt.datetime.now(_dt.UTC).isoformat(),
            data=data or {},
        )

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, payload: bytes) -> Event:
        return cls.model_validate(json.loads(payload))
