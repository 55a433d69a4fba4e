"""A driver wrapper that stops blob uploads growing past `limits.max_blob_bytes`.

It is a `DriverWrapper`, as cross-cutting concerns are here, and changes one
thing: a writer on an upload session's data (`_uploads/<id>/data`) refuses a
write that would take it past the limit, with `PayloadTooLarge`, before
writing any of it. Everything else passes through untouched. This catches
what the HTTP layer cannot see in advance: chunks adding up past the limit,
and bodies sent without a length.
"""

from __future__ import annotations

from registry import layout
from registry.drivers.base import FileWriter, StorageDriver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import PayloadTooLarge


class BlobSizeLimit(DriverWrapper):
    """`inner`, with upload and staged (blob) writers limited to `max_bytes` in all."""

    def __init__(self, inner: StorageDriver, max_bytes: int) -> None:
        super().__init__(inner)
        self._max_bytes = max_bytes

    def wrap_writer(self, writer: FileWriter, path: str, staged: bool) -> FileWriter:
        # Staged writers carry whole blobs (monolithic uploads).
        if staged:
            return _LimitedWriter(writer, self._max_bytes)
        entry = layout.parse_repository_path(path)
        if entry is not None and entry.kind == "upload" and path.endswith("/data"):
            return _LimitedWriter(writer, self._max_bytes)
        return writer


class _LimitedWriter(FileWriter):
    def __init__(self, inner: FileWriter, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    @property
    def size(self) -> int:
        return self._inner.size

    @property
    def in_memory(self) -> bool:
        return self._inner.in_memory

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
