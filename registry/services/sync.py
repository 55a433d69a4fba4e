"""Keeping one process's index in step with the other processes on the same storage.

`IndexSync.run` reads the change feed every `feed.interval_seconds` and, for
each change another process published, re-reads what it names from storage
into this process's index and caches. It trims this process's old feed
records, and every `feed.reconcile_seconds` compares the whole index with
storage, which picks up writes that never reached the feed (Distribution
sharing the bucket, files removed by hand, a record lost in a crash).

A process that fell behind the feed's retention (storage unreachable for
minutes, a stopped process resumed) cannot know what it missed: it
reconciles before applying anything newer, repository by repository, each
repository swapped in whole.
"""

from __future__ import annotations

import asyncio
import logging
import time

from registry.config import FeedConfig
from registry.errors import DigestInvalid, StorageError, Unsupported
from registry.metrics import observe_feed_lag
from registry.services.blobs import BlobStore
from registry.services.feed import Change, ChangeFeed
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore

log = logging.getLogger(__name__)

_APPLY_CONCURRENCY = 16


class IndexSync:
    """Applies other processes' changes to this process's index, blobs and manifests."""

    def __init__(
        self,
        index: TagIndex,
        blobs: BlobStore,
        manifests: ManifestStore,
        feed: ChangeFeed,
        config: FeedConfig,
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._manifests = manifests
        self._feed = feed
        self._config = config
        #: When the feed was last read whole and applied (monotonic clock); the feed-lag
        #: metric is the time since.
        self.last_sync = time.monotonic()

    async def run(self) -> None:
        """Follow the feed until cancelled; storage errors are logged and retried next time."""
        interval = self._config.interval_seconds
        trim_every = self._config.retention_seconds / 4
        next_trim = time.monotonic() + trim_every
        reconcile_every = self._config.reconcile_seconds
        next_reconcile = time.monotonic() + reconcile_every
        while True:
            await asyncio.sleep(interval)
            observe_feed_lag(time.monotonic() - self.last_sync)
            try:
                await self.catch_up()
                now = time.monotonic()
                if now >= next_trim:
                    next_trim = now + trim_every
                    await self._feed.trim()
                if reconcile_every and now >= next_reconcile:
                    next_reconcile = now + reconcile_every
                    await self.reconcile()
            except StorageError as e:
                log.warning("change feed: not read this time: %s", e)

    async def catch_up(self) -> None:
        """Read the feed once and apply what other processes published.

        Raises `StorageError` if the feed or storage cannot be read; what
        was not applied is read again next time (or reconciled).
        """
        changes = await self._feed.poll()
        if changes is None:
            log.warning("change feed: fell behind its retention; reconciling with storage")
            await self.reconcile()
            self._feed.restart_from_now()
        else:
            await self._apply_all(changes)
        self.last_sync = time.monotonic()

    async def reconcile(self) -> None:
        """Compare the whole index with storage and take what storage says."""
        started = time.monotonic()
        changed = await self._index.reconcile()
        for name in self._index.repositories():
            self._manifests.forget_referrers(name)
        log.info(
            "reconciled the index with storage in %.2fs: %d repositories changed",
            time.monotonic() - started,
            changed,
        )

    async def _apply_all(self, changes: list[Change]) -> None:
        # One re-read per distinct change, whatever order they came in:
        # storage says how each one ended.
        unique = list(dict.fromkeys(changes))
        limit = asyncio.Semaphore(_APPLY_CONCURRENCY)

        async def one(change: Change) -> None:
            async with limit:
                try:
                    await self.apply(change)
                except (DigestInvalid, Unsupported) as e:
                    log.warning("change feed: skipping %s: %s", change, e)

        await asyncio.gather(*(one(c) for c in unique))

    async def apply(self, change: Change) -> None:
        """Re-read from storage what `change` names. Raises `StorageError` on a fault."""
        name = change.repository
        if change.kind == "tag":
            await self._index.refresh_tag(name, change.tag)
        elif change.kind == "manifest":
            await self._index.refresh_manifest(name, change.digest)
            self._manifests.forget_referrers(name)
        elif change.kind == "layer":
            await self._index.refresh_layer(name, change.digest)
        elif change.kind == "blob":
            self._blobs.forget(change.digest)
        elif change.kind == "repository":
            await self._index.refresh_repository(name)
            self._manifests.forget_referrers(name)
