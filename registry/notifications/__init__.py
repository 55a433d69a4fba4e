"""Registry events for webhooks: what was pushed, pulled, deleted or mounted, and by whom.

- `events`: the `Event` and its wire formats (Distribution's envelope, CloudEvents 1.0);
- `endpoint`: one `[[notifications.endpoints]]` entry: filters, a bounded queue, delivery;
- `listener`: decorators around the manifest, blob and upload services that emit events.

`Notifier.install` puts the decorators on a `Registry`; events are emitted by
the process that served the action, once per action, and delivered by
background tasks of that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from typing import cast

import aiohttp

from registry.config import NotificationsConfig
from registry.notifications.endpoint import Endpoint
from registry.notifications.events import Event, Source, Target
from registry.notifications.listener import NotifyingBlobs, NotifyingManifests, NotifyingUploads
from registry.services.blobs import BlobStore
from registry.services.manifests import ManifestStore
from registry.services.registry import Registry
from registry.services.uploads import UploadStore

__all__ = ["Notifier"]


class Notifier:
    """The endpoints of `config`, fed by `emit`, delivering from `start` until `close`."""

    def __init__(self, config: NotificationsConfig, port: int) -> None:
        self.endpoints = [Endpoint(endpoint) for endpoint in config.endpoints]
        self._source = Source(f"{socket.gethostname()}:{port}", str(uuid.uuid4()))
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, action: str, target: Target) -> None:
        """Queue an event of the current request for every endpoint that wants it; never waits."""
        event = Event.now(action, target, self._source)
        for endpoint in self.endpoints:
            endpoint.offer(event)

    def install(self, registry: Registry) -> None:
        """Make `registry`'s manifest, blob and upload services emit events."""
        registry.manifests = cast(ManifestStore, NotifyingManifests(registry.manifests, self.emit))
        registry.blobs = cast(BlobStore, NotifyingBlobs(registry.blobs, self.emit))
        registry.uploads = cast(UploadStore, NotifyingUploads(registry.uploads, self.emit))

    def start(self) -> None:
        """Start delivering, one background task per endpoint."""
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(e.run(self._session)) for e in self.endpoints]

    async def close(self) -> None:
        """Stop delivering; events still queued are dropped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
