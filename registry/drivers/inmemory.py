"""A storage driver keeping everything in a dict, for tests and throw-away registries.

It is a complete driver, not a mock: the shared suite in `tests/drivers/`
holds it to the same contracts as the others, so a test run against it says
something about the real backends. Content lives in process memory and is
lost with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator

from registry.drivers.base import FileInfo, FileWriter, StorageDriver
from registry.errors import InvalidOffset, PathNotFound

#: Bytes per chunk yielded by `reader`.
CHUNK_SIZE = 1024 * 1024


class InMemoryDriver(StorageDriver):
    """Committed files in a dict of path to content; directories are implied by paths.

    Like an object store, a directory exists while a committed file lies
    below it. Uncommitted content of writers is kept apart and is invisible to
    every method but `writer(append=True)` and `delete`.
    """

    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, float]] = {}
        # Content of writers not yet committed, by path; a closed writer's
        # content stays here for `writer(append=True)` to resume.
        self._uploads: dict[str, bytearray] = {}

    async def _get_content(self, path: str) -> bytes:
        try:
            return self._files[path][0]
        except KeyError:
            raise PathNotFound(self.name, path) from None

    async def _put_content(self, path: str, data: bytes) -> None:
        self._files[path] = (bytes(data), time.time())

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        data = await self._get_content(path)
        if offset > len(data):
            raise InvalidOffset(self.name, path)
        end = len(data) if length is None else min(len(data), offset + length)
        return _chunks(data, offset, end)

    async def _writer(self, path: str, append: bool) -> FileWriter:
        if not append:
            self._uploads[path] = bytearray()
        elif path not in self._uploads:
            raise PathNotFound(self.name, path)
        return _MemoryWriter(self, path, self._uploads[path])

    async def _stat(self, path: str) -> FileInfo:
        if path in self._files:
            data, modified = self._files[path]
            return FileInfo(path, len(data), modified, False)
        if self._below(path):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(self.name, path)

    async def _list(self, path: str) -> list[str]:
        start = len(path) + 1
        children = {f"{path}/{found[start:].split('/', 1)[0]}" for found in self._below(path)}
        if not children:
            raise PathNotFound(self.name, path)
        return sorted(children)

    async def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        paths = self._below(path)
        if start_after is not None:
            paths = [found for found in paths if found > start_after]
        # Sorted once up front; a file deleted while the caller is between
        # steps is skipped rather than reported.
        for found in sorted(paths):
            if found in self._files:
                data, modified = self._files[found]
                yield FileInfo(found, len(data), modified, False)

    async def _move(self, source: str, dest: str) -> None:
        try:
            self._files[dest] = self._files.pop(source)
        except KeyError:
            raise PathNotFound(self.name, source) from None

    async def _delete(self, path: str) -> None:
        prefix = f"{path}/"
        found = False
        # Uncommitted content goes too, as the filesystem driver's files would.
        for table in (self._files, self._uploads):
            doomed = [key for key in table if key == path or key.startswith(prefix)]
            for key in doomed:
                del table[key]
            found = found or bool(doomed)
        if not found:
            raise PathNotFound(self.name, path)

    def _below(self, path: str) -> list[str]:
        """Paths of the committed files below directory `path`, unordered."""
        prefix = f"{path}/"
        return [found for found in self._files if found.startswith(prefix)]


class _MemoryWriter(FileWriter):
    """Appends to the driver's uncommitted buffer for a path."""

    def __init__(self, driver: InMemoryDriver, path: str, buffer: bytearray) -> None:
        self._begin(driver.name, path)
        self._driver = driver
        self._path = path
        self._buffer = buffer

    @property
    def size(self) -> int:
        return len(self._buffer)

    async def write(self, data: bytes) -> None:
        self._check_open()
        self._buffer += data

    async def close(self) -> None:
        self._end()

    async def commit(self) -> None:
        await self.commit_to(self._path)

    async def commit_to(self, path: str) -> None:
        self._driver.check_path(path)
        self._end()
        self._driver._uploads.pop(self._path, None)
        await self._driver._put_content(path, bytes(self._buffer))

    async def cancel(self) -> None:
        self._end()
        self._driver._uploads.pop(self._path, None)


async def _chunks(data: bytes, start: int, end: int) -> AsyncGenerator[bytes, None]:
    for chunk_start in range(start, end, CHUNK_SIZE):
        yield data[chunk_start : min(end, chunk_start + CHUNK_SIZE)]
