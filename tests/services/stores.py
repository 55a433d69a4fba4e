"""Upload stores as processes sharing one storage have them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from registry.drivers.base import StorageDriver
from registry.keys import SharedKeys
from registry.services.blobs import BlobStore
from registry.services.index import TagIndex
from registry.services.uploadids import UPLOAD_KEYS, UploadIds
from registry.services.uploads import UploadStore


async def uploads(driver: StorageDriver, max_age: float = 0.0) -> UploadStore:
    """An upload store as a fresh process has it: the storage's keys read, nothing of
    any session in memory."""
    keys = SharedKeys(driver, UPLOAD_KEYS, may_write=True)
    await keys.open()
    blobs = BlobStore(driver, TagIndex(), delete_enabled=True)
    return UploadStore(driver, blobs, UploadIds(keys, max_age))


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
