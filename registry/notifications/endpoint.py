"""One webhook endpoint: which events it wants, a bounded queue of them, and their delivery.

`offer` never waits: an event the endpoint's filters let through is queued,
and when the queue is full the oldest queued event is dropped (and counted),
so a slow or dead endpoint never slows the request that caused the event.
`run` delivers in the background, one POST per batch of queued events
(Distribution's envelope holds several; a CloudEvent is one event), and
retries a failed POST until it succeeds: immediately for the first
`threshold` failures in a row, then every `backoff` seconds, as Distribution
does. A POST fails on a connection error, a `timeout`, or a status outside
200-399.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import aiohttp

from registry import SERVER
from registry.auth.access import compile_pattern
from registry.config import EndpointConfig
from registry.metrics import metrics
from registry.notifications.events import Event, cloudevent, distribution_envelope

log = logging.getLogger(__name__)

#: Events queued per endpoint; past this the oldest are dropped.
QUEUE_EVENTS = 1000
#: Events per POST in Distribution's envelope.
BATCH_EVENTS = 100


class Endpoint:
    """A webhook and its queue; `run` delivers until cancelled."""

    def __init__(self, config: EndpointConfig, queue_events: int = QUEUE_EVENTS) -> None:
        self.config = config
        self.name = config.name or config.url
        self._queue: deque[Event] = deque(maxlen=queue_events)
        self._queued = asyncio.Event()
        self._patterns = [compile_pattern(p) for p in config.repositories]
        # Named as the `Server` header names us, without versions; configured headers win.
        self._headers: dict[str, str] = {"User-Agent": SERVER}
        for header in config.headers:
            key, _, value = header.partition(":")
            self._headers[key.strip()] = value.strip()
        counter = metrics().events
        self._sent = counter.labels(self.name, "sent")
        self._failed = counter.labels(self.name, "failed")
        self._dropped = counter.labels(self.name, "dropped")
        self._encode: Callable[[list[Event]], tuple[bytes, str]] = (
            (lambda batch: cloudevent(batch[0]))
            if config.format == "cloudevents"
            else distribution_envelope
        )
        self._batch = 1 if config.format == "cloudevents" else BATCH_EVENTS

    def wants(self, event: Event) -> bool:
        """Whether the endpoint's filters (action, media type, repository) let `event` through."""
        c = self.config
        if c.actions and event.action not in c.actions:
            return False
        if c.media_types and event.target.media_type not in c.media_types:
            return False
        repository = event.target.repository
        return not self._patterns or any(p.fullmatch(repository) for p in self._patterns)

    def offer(self, event: Event) -> None:
        """Queue `event` if wanted, dropping the oldest queued event when the queue is full."""
        if not self.wants(event):
            return
        if len(self._queue) == self._queue.maxlen:
            self._dropped.inc()
        self._queue.append(event)
        self._queued.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Deliver queued events with `session` until cancelled."""
        while True:
            await self._queued.wait()
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            if not self._queue:
                self._queued.clear()
            if batch:
                await self._deliver(session, batch)

    async def _deliver(self, session: aiohttp.ClientSession, batch: list[Event]) -> None:
        body, content_type = self._encode(batch)
        headers = {**self._headers, "Content-Type": content_type}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        failures = 0
        while True:
            try:
                async with session.post(
                    self.config.url,
                    data=body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    if 200 <= response.status < 400:
                        self._sent.inc(len(batch))
                        return
                    problem = f"answered {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                problem = f"{type(e).__name__}: {e}"
            failures += 1
            self._failed.inc(len(batch))
            if failures == self.config.threshold:
                log.warning(
                    "events to %s: %s (%d attempts); retrying every %gs",
                    self.name,
                    problem,
                    failures,
                    self.config.backoff,
                )
            if failures >= self.config.threshold:
                await asyncio.sleep(self.config.backoff)
