"""Registry events and their wire formats: Distribution's envelope, or CloudEvents 1.0.

An `Event` says what happened (push, pull, delete, mount), to what (the
`Target`), at whose request (the current `RequestContext`, if any) and in which
process (`Source`). `distribution_envelope` is the body CNCF Distribution sends
(`application/vnd.docker.distribution.events.v1+json`, `{"events": [...]}`,
same field names), so consumers written for Distribution work unchanged.
`cloudevent` is one event as a structured-mode CloudEvent whose `data` is the
same event object.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from registry.logs import RequestContext, current_request

ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
#: CloudEvents `type` of an event is this followed by its action.
CLOUDEVENT_TYPE_PREFIX = "dev.cargobay.registry."
BLOB_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Target:
    """What an event is about: a manifest or blob of a repository (and the tag it was named by)."""

    media_type: str
    size: int
    digest: str
    repository: str
    kind: str  # "manifests" or "blobs": where its URL points
    tag: str | None = None
    from_repository: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """The registry process that emits events: its address and a per-process instance id."""

    addr: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class Event:
    """One registry event, with the request that caused it (None outside a request)."""

    id: str
    timestamp: datetime.datetime
    action: str
    target: Target
    request: RequestContext | None
    source: Source

    @classmethod
    def now(cls, action: str, target: Target, source: Source) -> Event:
        """An event of the current request happening now."""
        return cls(
            id=str(uuid.uuid4()),
            timestamp=datetime.datetime.now(datetime.UTC),
            action=action,
            target=target,
            request=current_request(),
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as Distribution's JSON object."""
        t = self.target
        target: dict[str, Any] = {
            "mediaType": t.media_type,
            "size": t.size,
            "digest": t.digest,
            "length": t.size,
            "repository": t.repository,
        }
        request: dict[str, Any] = {}
        actor: dict[str, Any] = {}
        r = self.request
        if r is not None:
            target["url"] = f"{r.scheme}://{r.host}/v2/{t.repository}/{t.kind}/{t.digest}"
            request = {
                "id": r.request_id,
                "addr": r.client,
                "host": r.host,
                "method": r.method,
                "useragent": r.useragent,
            }
            if r.user:
                actor["name"] = r.user
        if t.tag is not None:
            target["tag"] = t.tag
        if t.from_repository is not None:
            target["fromRepository"] = t.from_repository
        return {
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "action": self.action,
            "target": target,
            "request": request,
            "actor": actor,
            "source": {"addr": self.source.addr, "instanceID": self.source.instance_id},
        }


def distribution_envelope(events: list[Event]) -> tuple[bytes, str]:
    """The body and content type Distribution would POST for `events`."""
    return orjson.dumps({"events": [e.to_dict() for e in events]}), ENVELOPE_MEDIA_TYPE


def cloudevent(event: Event) -> tuple[bytes, str]:
    """The body and content type of `event` as a structured-mode CloudEvent 1.0."""
    target = event.target
    subject = f"{target.repository}@{target.digest}"
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": f"//{event.source.addr}/{event.source.instance_id}",
        "type": CLOUDEVENT_TYPE_PREFIX + event.action,
        "time": event.timestamp,
        "subject": subject,
        "datacontenttype": "application/json",
    }
    message = to_structured_event(CloudEvent(attributes, event.to_dict()))
    return message.body, message.headers["content-type"]
