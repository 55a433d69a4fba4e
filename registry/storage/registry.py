"""The registry as the HTTP layer sees it: blobs, uploads and manifests over one driver.

`Registry.open` builds the driver named by the configuration, opens it and
rebuilds the tag index from storage; only then is the registry ready to serve.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.config import StorageConfig
from registry.storage.blobs import BlobStore
from registry.storage.driver import StorageDriver
from registry.storage.manifests import ManifestStore
from registry.storage.tagindex import TagIndex
from registry.storage.uploads import UploadStore


def create_driver(config: StorageConfig) -> StorageDriver:
    """The storage driver `config.driver` names, configured but not yet opened."""
    if config.driver == "filesystem":
        from registry.storage.filesystem import FilesystemDriver

        return FilesystemDriver(config.filesystem.root)
    if config.driver == "s3":
        from registry.storage.s3 import S3Driver

        return S3Driver(config.s3)
    from registry.storage.inmemory import InMemoryDriver

    return InMemoryDriver()


@dataclass(slots=True)
class Registry:
    """The services of one registry, sharing one driver and one tag index."""

    driver: StorageDriver
    index: TagIndex
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    delete_enabled: bool

    @classmethod
    async def open(cls, driver: StorageDriver, delete_enabled: bool = True) -> Registry:
        """Open `driver`, rebuild the index from it, and return the ready registry."""
        await driver.open()
        try:
            index = await TagIndex.rebuild(driver)
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
        )

    async def close(self) -> None:
        """Release the driver's resources."""
        await self.driver.close()
