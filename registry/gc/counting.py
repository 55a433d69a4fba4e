"""Counting the storage requests a collection makes, for its report.

A `DriverWrapper`, so every backend is counted alike. Walks are streams of
listings the driver pages itself; they are counted as one listing per 1,000
entries (plus one), which is what S3's ListObjectsV2 costs and an upper
bound of the directory reads a filesystem walk makes per file. A
`delete_files` call counts the same way, one per 1,000 files (plus one):
S3 deletes up to 1,000 keys a request (the directories' markers go in as
many again, and are not counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from registry.drivers.base import FileInfo, IncompleteWrite, StorageDriver
from registry.drivers.wrapper import DriverWrapper

T = TypeVar("T")
E = TypeVar("E")

_PAGE = 1000


class CountingDriver(DriverWrapper):
    """The inner driver, counting each operation (`counts`) as it is called."""

    counts: Counter[str]

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self.counts = Counter()

    @property
    def requests(self) -> int:
        """Every operation counted so far."""
        return sum(self.counts.values())

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        self.counts[operation] += 1
        return await call

    async def _delete_files(self, paths: list[str]) -> None:
        self.counts["delete_files"] += 1 + len(paths) // _PAGE
        await self.inner._delete_files(paths)

    def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        return self._paged(self.inner._walk(path, start_after))

    def _incomplete_writes(self, path: str) -> AsyncIterator[IncompleteWrite]:
        return self._paged(self.inner._incomplete_writes(path))

    async def _paged(self, listing: AsyncIterator[E]) -> AsyncIterator[E]:
        self.counts["list"] += 1
        seen = 0
        async for entry in listing:
            seen += 1
            if seen % _PAGE == 0:
                self.counts["list"] += 1
            yield entry
