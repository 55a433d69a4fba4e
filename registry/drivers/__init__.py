"""Storage drivers: the interface every backend implements (`base`), the backends
(filesystem, in-memory, S3), and wrappers that add a cross-cutting concern to any driver.

Drivers store opaque bytes under paths; they know nothing of HTTP or of the
registry's semantics beyond what a wrapper is told.
"""

from __future__ import annotations

from registry.config import StorageConfig
from registry.drivers.base import FileInfo, FileWriter, StorageDriver

__all__ = ["FileInfo", "FileWriter", "StorageDriver", "create_driver"]


def create_driver(config: StorageConfig) -> StorageDriver:
    """The storage driver `config.driver` names, configured but not yet opened."""
    if config.driver == "filesystem":
        from registry.drivers.filesystem import FilesystemDriver

        return FilesystemDriver(config.filesystem.root)
    if config.driver == "s3":
        from registry.drivers.s3 import S3Driver

        return S3Driver(config.s3)
    from registry.drivers.inmemory import InMemoryDriver

    return InMemoryDriver()
