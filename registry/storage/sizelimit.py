"""A driver wrapper that stops blob uploads growing past `limits.max_blob_bytes`.

It wraps any driver, as cross-cutting concerns do here, and changes one
thing: a writer on an upload session's data (`_uploads/<id>/data`) refuses a
write that would take it past the limit, with `PayloadTooLarge`, before
writing any of it. Everything else passes through untouched. This catches
what the HTTP layer cannot see in advance: chunks adding up past the limit,
and bodies sent without a length.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator

from registry.errors import PayloadTooLarge
from registry.storage import layout
from registry.storage.driver import FileInfo, FileWriter, StorageDriver


class BlobSizeLimit(StorageDriver):
    """`inner`, with upload and staged (blob) writers limited to `max_bytes` in all."""

    def __init__(self, inner: StorageDriver, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes
        self.name = inner.name
        self.bulk_concurrency = inner.bulk_concurrency

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def _writer(self, path: str, append: bool) -> FileWriter:
        writer = await self._inner.writer(path, append)
        entry = layout.parse_repository_path(path)
        if entry is not None and entry.kind == "upload" and path.endswith("/data"):
            return _LimitedWriter(writer, self._max_bytes)
        return writer

    async def _staged_writer(self, path: str) -> FileWriter:
        # Staged writers carry whole blobs (monolithic uploads); the inner
        # driver's own staging is kept, S3's copy-free one included.
        return _LimitedWriter(await self._inner.staged_writer(path), self._max_bytes)

    async def _get_content(self, path: str) -> bytes:
        return await self._inner.get_content(path)

    async def _put_content(self, path: str, data: bytes) -> None:
        await self._inner.put_content(path, data)

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        return await self._inner.reader(path, offset, length)

    async def _stat(self, path: str) -> FileInfo:
        return await self._inner.stat(path)

    async def _list(self, path: str) -> builtins.list[str]:
        return await self._inner.list(path)

    def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        return self._inner.walk(path, start_after)

    async def _move(self, source: str, dest: str) -> None:
        await self._inner.move(source, dest)

    async def _delete(self, path: str) -> None:
        await self._inner.delete(path)

    async def _redirect_url(self, path: str, method: str) -> str | None:
        return await self._inner.redirect_url(path, method)

    def _local_file(self, path: str) -> str | None:
        return self._inner.local_file(path)


class _LimitedWriter(FileWriter):
    def __init__(self, inner: FileWriter, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes) -> None:
        if self._inner.size + len(data) > self._max_bytes:
            raise PayloadTooLarge(f"blobs are limited to {self._max_bytes} bytes")
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    async def commit(self) -> None:
        await self._inner.commit()

    async def commit_to(self, path: str) -> None:
        await self._inner.commit_to(path)

    async def cancel(self) -> None:
        await self._inner.cancel()
