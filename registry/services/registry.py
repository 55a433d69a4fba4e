"""The registry as the HTTP layer sees it: blobs, uploads and manifests over one driver.

`Registry.open` opens the driver and finds the repositories in storage; the
registry serves from then on, while the tag index loads every repository in
the background (and any one a request needs first, at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from registry.drivers.base import StorageDriver
from registry.services.blobs import BlobStore
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore
from registry.services.uploads import UploadStore


@dataclass(slots=True)
class Registry:
    """The services of one registry, sharing one driver and one tag index."""

    driver: StorageDriver
    index: TagIndex
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    delete_enabled: bool
    warming: asyncio.Task[None]

    @classmethod
    async def open(cls, driver: StorageDriver, delete_enabled: bool = True) -> Registry:
        """Open `driver`, find its repositories, and return the registry, ready to serve."""
        await driver.open()
        try:
            index = await TagIndex.discover(driver)
        except BaseException:
            await driver.close()
            raise
        blobs = BlobStore(driver, index, delete_enabled)
        return cls(
            driver=driver,
            index=index,
            blobs=blobs,
            uploads=UploadStore(driver, blobs),
            manifests=ManifestStore(driver, index, blobs, delete_enabled),
            delete_enabled=delete_enabled,
            warming=asyncio.create_task(index.warm()),
        )

    async def close(self) -> None:
        """Stop loading the index and release the driver's resources."""
        self.warming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.warming
        await self.driver.close()
