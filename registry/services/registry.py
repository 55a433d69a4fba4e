"""The registry as the HTTP layer sees it: blobs, uploads and manifests over one driver.

`Registry.open` opens the driver and finds the repositories in storage; the
registry serves from then on, while the tag index loads every repository in
the background (and any one a request needs first, at once), and follows the
change feed through which the processes sharing the storage tell each other
what they wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from registry.config import FeedConfig
from registry.drivers.base import StorageDriver
from registry.errors import StorageError
from registry.keys import SharedKeys
from registry.services.blobs import BlobStore
from registry.services.feed import ChangeFeed
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore
from registry.services.sync import IndexSync
from registry.services.uploadids import UPLOAD_KEYS, UploadIds
from registry.services.uploads import UploadStore


@dataclass(slots=True)
class Registry:
    """The services of one registry, sharing one driver and one tag index."""

    driver: StorageDriver
    index: TagIndex
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    #: `manifests` and `blobs` as `open` made them, beneath the decorators installed on
    #: those two later (events, pull times, the pull-through cache): for reads that are no
    #: client's pull, such as the web page's, which must neither send pull events, nor
    #: keep tags alive under a retention rule, nor fetch from an upstream.
    stored_manifests: ManifestStore
    stored_blobs: BlobStore
    feed: ChangeFeed
    sync: IndexSync
    delete_enabled: bool
    tasks: tuple[asyncio.Task[None], ...]

    @classmethod
    async def open(
        cls,
        driver: StorageDriver,
        delete_enabled: bool = True,
        feed_config: FeedConfig | None = None,
        read_only: bool = False,
        upload_expiry: float = 0.0,
    ) -> Registry:
        """Open `driver`, find its repositories, and return the registry, ready to serve.

        Upload ids are refused `upload_expiry` seconds after their session
        started (0: never); with `read_only` no key to sign them is stored.
        Raises `StorageError` if storage cannot be listed, or its upload keys
        cannot be read or made; the driver is closed then.
        """
        feed_config = feed_config or FeedConfig()
        await driver.open()
        try:
            # Created before the discovery, so that the feed is read from a
            # point no later than what the discovery saw.
            feed = ChangeFeed(driver, retention=feed_config.retention_seconds)
            negative_ttl = min(1.0, feed_config.interval_seconds)
            index = await TagIndex.discover(driver, negative_ttl)
            upload_keys = SharedKeys(driver, UPLOAD_KEYS, may_write=not read_only)
            await upload_keys.open()
        except BaseException:
            await driver.close()
            raise
        blobs = BlobStore(driver, index, delete_enabled, feed)
        manifests = ManifestStore(driver, index, blobs, delete_enabled, feed)
        sync = IndexSync(index, blobs, manifests, feed, feed_config)
        return cls(
            driver=driver,
            index=index,
            blobs=blobs,
            uploads=UploadStore(driver, blobs, UploadIds(upload_keys, upload_expiry)),
            manifests=manifests,
            stored_manifests=manifests,
            stored_blobs=blobs,
            feed=feed,
            sync=sync,
            delete_enabled=delete_enabled,
            tasks=(asyncio.create_task(index.warm()), asyncio.create_task(sync.run())),
        )

    @property
    def warming(self) -> asyncio.Task[None]:
        """The background load of the index; done once every repository is loaded."""
        return self.tasks[0]

    async def close(self) -> None:
        """Stop the background work, write the feed's pending changes, release the driver."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StorageError):
            await self.feed.close()
        await self.driver.close()
