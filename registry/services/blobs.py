"""Blobs as a repository sees them: content shared by digest, visible through links.

A blob is readable in a repository only once a `_layers` link there names it
(an upload finished there, or a mount from another repository). The content
itself is written once under `blobs/` and shared by every repository.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import BinaryIO

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import BlobUnknown, PathNotFound, Unsupported
from registry.services.index import TagIndex

# Blob sizes never change (content addressing), so a bounded map of them saves
# one storage round trip per HEAD/GET; 100,000 entries is ~15 MB.
_SIZE_CACHE_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob's identity and length."""

    digest: Digest
    size: int


class BlobStore:
    """Reads, links, mounts and unlinks blobs of repositories."""

    def __init__(self, driver: StorageDriver, index: TagIndex, delete_enabled: bool) -> None:
        self._driver = driver
        self._index = index
        self._delete_enabled = delete_enabled
        self._sizes: OrderedDict[str, int] = OrderedDict()

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """The blob `digest` as linked in `name`; `BlobUnknown` if it is not."""
        await self._index.load(name)
        if not self._index.has_layer(name, str(digest)):
            raise BlobUnknown(detail={"digest": str(digest)})
        size = await self.content_size(digest)
        if size is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        return BlobInfo(digest, size)

    async def content_size(self, digest: Digest) -> int | None:
        """The size of the shared content of `digest`, or None if no content is stored."""
        key = str(digest)
        size = self._sizes.get(key)
        if size is not None:
            self._sizes.move_to_end(key)
            return size
        try:
            info = await self._driver.stat(layout.blob_data(digest))
        except PathNotFound:
            return None
        self.remember_size(digest, info.size)
        return info.size

    def remember_size(self, digest: Digest, size: int) -> None:
        """Record the size of content just written, sparing a later stat."""
        self._sizes[str(digest)] = size
        if len(self._sizes) > _SIZE_CACHE_ENTRIES:
            self._sizes.popitem(last=False)

    async def open(
        self, blob: BlobInfo, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """A stream of the blob's bytes (a range of them with `offset`/`length`).

        Raises `BlobUnknown` if the content vanished since `stat`.
        """
        try:
            return await self._driver.reader(layout.blob_data(blob.digest), offset, length)
        except PathNotFound as e:
            raise BlobUnknown(detail={"digest": str(blob.digest)}) from e

    async def redirect_url(self, blob: BlobInfo) -> str | None:
        """A URL the client may fetch the blob from directly, or None."""
        return await self._driver.redirect_url(layout.blob_data(blob.digest))

    async def open_file(self, blob: BlobInfo) -> BinaryIO | None:
        """The local file holding the blob, open for reading, for zero-copy serving.

        None if the driver keeps no local file for it (read it with `open`).
        Raises `BlobUnknown` if the content vanished since `stat`. The caller
        closes the file.
        """
        path = self._driver.local_file(layout.blob_data(blob.digest))
        if path is None:
            return None
        try:
            return await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as e:
            raise BlobUnknown(detail={"digest": str(blob.digest)}) from e

    async def link(self, name: str, digest: Digest) -> None:
        """Make the stored content of `digest` visible in `name`."""
        await self._index.load(name)
        await self._driver.put_content(layout.layer_link(name, digest), str(digest).encode())
        self._index.add_layer(name, str(digest))

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link blob `digest` from repository `source` into `name`, or None if `source` lacks it."""
        await self._index.load(source)
        await self._index.load(name)
        if not self._index.has_layer(source, str(digest)):
            return None
        size = await self.content_size(digest)
        if size is None:
            return None
        if not self._index.has_layer(name, str(digest)):
            await self.link(name, digest)
        return BlobInfo(digest, size)

    async def delete(self, name: str, digest: Digest) -> None:
        """Unlink blob `digest` from `name`; the shared content stays for garbage collection."""
        if not self._delete_enabled:
            raise Unsupported("deletes are disabled on this registry")
        await self._index.load(name)
        if not self._index.has_layer(name, str(digest)):
            raise BlobUnknown(detail={"digest": str(digest)})
        # Already gone from storage means the index was behind: catch it up.
        with contextlib.suppress(PathNotFound):
            await self._driver.delete(layout.layer_link(name, digest))
        self._index.remove_layer(name, str(digest))
