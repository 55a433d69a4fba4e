"""Blobs as a repository sees them: content shared by digest, visible through links.

A blob is readable in a repository only once a `_layers` link there names it
(an upload finished there, or a mount from another repository). The content
itself is written once under `blobs/` and shared by every repository.

Other processes may delete a blob's content (garbage collection, an
operator), so a decision that could lose data asks storage, never a cache:
`content_size` always does. What a HEAD is told exists (`head`) was confirmed
by storage within the last second. A GET (`stat`) needs no such
confirmation: reading the content confirms it, and a size, once known,
never changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, MutableMapping
from dataclasses import dataclass
from typing import BinaryIO

from cachetools import LRUCache, TTLCache

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import BlobUnknown, PathNotFound, Unsupported
from registry.metrics import cache_tallies
from registry.services.feed import Change, ChangeFeed
from registry.services.index import TagIndex

# Blob sizes never change (content addressing), but content can be deleted:
# a size confirmed by storage this recently answers a HEAD without asking
# again, which keeps a storm of HEADs off storage.
_SIZE_CACHE_ENTRIES = 100_000
_SIZE_CONFIRMED_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob's identity and length."""

    digest: Digest
    size: int


class BlobStore:
    """Reads, links, mounts and unlinks blobs of repositories."""

    def __init__(
        self,
        driver: StorageDriver,
        index: TagIndex,
        delete_enabled: bool,
        feed: ChangeFeed | None = None,
    ) -> None:
        self._driver = driver
        self._index = index
        self._delete_enabled = delete_enabled
        self._feed = feed
        self._sizes: TTLCache[str, int] = TTLCache(
            maxsize=_SIZE_CACHE_ENTRIES, ttl=_SIZE_CONFIRMED_SECONDS, timer=time.monotonic
        )
        # Every size storage confirmed, however long ago: enough for reads, which
        # confirm the content themselves.
        self._lengths: LRUCache[str, int] = LRUCache(maxsize=_SIZE_CACHE_ENTRIES)
        self._hits, self._misses = cache_tallies("blob_sizes")

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """The blob `digest` as linked in `name`, to be read; `BlobUnknown` if it is not.

        The link was confirmed by storage, and the size, which never changes,
        at some time. Whether the content is still there is confirmed by
        reading it (`open` and `open_file` raise `BlobUnknown`), or by storage
        itself answering the client sent there by `redirect_url`: so a pull
        storm costs storage only its reads. Raises `StorageError` if storage
        cannot say.
        """
        return await self._described(name, digest, self._lengths)

    async def head(self, name: str, digest: Digest) -> BlobInfo:
        """The blob `digest` of `name` as a HEAD describes it; `BlobUnknown` if not linked.

        Both the link and the content were confirmed by storage, the content
        within the last second: a HEAD's 200 is one storage would confirm.
        Apart from `stat` also so that a decorator can answer without preparing
        to serve the bytes (a pull-through cache asks its upstream instead of
        downloading). Raises `StorageError` if storage cannot say.
        """
        return await self._described(name, digest, self._sizes)

    async def _described(
        self, name: str, digest: Digest, known: MutableMapping[str, int]
    ) -> BlobInfo:
        key = str(digest)
        if not await self._index.find_layer(name, key):
            raise BlobUnknown(detail={"digest": key})
        size = known.get(key)
        if size is None:
            self._misses.add()
            size = await self.content_size(digest)
        else:
            self._hits.add()
        if size is None:
            raise BlobUnknown(detail={"digest": key})
        return BlobInfo(digest, size)

    async def content_size(self, digest: Digest) -> int | None:
        """The size of the shared content of `digest` as storage says now, or None if absent."""
        try:
            info = await self._driver.stat_file(layout.blob_data(digest))
        except PathNotFound:
            self.forget(str(digest))
            return None
        self.remember_size(digest, info.size)
        return info.size

    def remember_size(self, digest: Digest, size: int) -> None:
        """Record the size of content just written or confirmed, sparing a stat for a second."""
        self._sizes[str(digest)] = size
        self._lengths[str(digest)] = size

    def forget(self, digest: str) -> None:
        """Drop what is remembered of the content of `digest` (another process deleted it)."""
        self._sizes.pop(digest, None)
        self._lengths.pop(digest, None)

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
        self._publish(Change("layer", name, str(digest)))

    async def mount(self, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link blob `digest` from repository `source` into `name`, or None if `source` lacks it.

        The content's existence is confirmed by storage, not a cache.
        """
        if not await self._index.find_layer(source, str(digest)):
            return None
        size = await self.content_size(digest)
        if size is None:
            return None
        if not await self._index.find_layer(name, str(digest)):
            await self.link(name, digest)
        return BlobInfo(digest, size)

    async def delete(self, name: str, digest: Digest) -> None:
        """Unlink blob `digest` from `name`; the shared content stays for garbage collection."""
        if not self._delete_enabled:
            raise Unsupported("deletes are disabled on this registry")
        if not await self._index.find_layer(name, str(digest)):
            raise BlobUnknown(detail={"digest": str(digest)})
        # Already gone from storage means the index was behind: catch it up.
        with contextlib.suppress(PathNotFound):
            await self._driver.delete(layout.layer_link(name, digest))
        self._index.remove_layer(name, str(digest))
        self._publish(Change("layer", name, str(digest)))

    def _publish(self, change: Change) -> None:
        if self._feed is not None:
            self._feed.publish(change)
