"""One wrapper around any driver, for the concerns every call shares.

As Distribution's `base` driver does, a `DriverWrapper` passes every
operation to the driver it wraps, through two hooks a subclass overrides:
`observe` sees each operation as it runs (timing, counting, limiting), and
`wrap_writer` may replace the writers the inner driver hands out (size
limits). A concern written once here applies to every backend alike, and
wrappers stack: the outermost one sees every call first.

Paths are validated by the wrapper's own public methods before the hooks
see them, and not again by the inner driver.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TypeVar

from registry.drivers.base import FileInfo, FileWriter, IncompleteWrite, StorageDriver

T = TypeVar("T")


class DriverWrapper(StorageDriver):
    """`inner`, with every operation passed through `observe` and writers through
    `wrap_writer`. Unless a subclass overrides them, it behaves exactly as `inner`."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.bulk_concurrency = inner.bulk_concurrency

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        """Run `call`, the inner driver's `operation` on `path`, and return its result.

        An override must await `call` exactly once and let its exceptions
        through (it may record them). `operation` is the public method's name.
        """
        return await call

    def wrap_writer(self, writer: FileWriter, path: str, staged: bool) -> FileWriter:
        """The writer to hand out for `path` in place of the inner driver's `writer`.

        `staged` is true for `staged_writer`. The default hands it out as it is.
        """
        return writer

    def with_bulk_concurrency(self, limit: int) -> StorageDriver:
        # The innermost driver's walks read its own `bulk_concurrency`: narrowed there.
        view = copy.copy(self)
        view.inner = self.inner.with_bulk_concurrency(min(limit, self.bulk_concurrency))
        view.bulk_concurrency = view.inner.bulk_concurrency
        return view

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def _get_content(self, path: str) -> bytes:
        return await self.observe("get_content", path, self.inner._get_content(path))

    async def _put_content(self, path: str, data: bytes) -> None:
        await self.observe("put_content", path, self.inner._put_content(path, data))

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        return await self.observe("reader", path, self.inner._reader(path, offset, length))

    async def _writer(self, path: str, append: bool) -> FileWriter:
        writer = await self.observe("writer", path, self.inner._writer(path, append))
        return self.wrap_writer(writer, path, staged=False)

    async def _resume_or_start_writer(self, path: str) -> tuple[FileWriter, bool]:
        writer, resumed = await self.observe(
            "resume_or_start_writer", path, self.inner._resume_or_start_writer(path)
        )
        return self.wrap_writer(writer, path, staged=False), resumed

    async def _staged_writer(self, path: str) -> FileWriter:
        # The inner driver's own staging is kept (S3's copy-free one included).
        writer = await self.observe("staged_writer", path, self.inner._staged_writer(path))
        return self.wrap_writer(writer, path, staged=True)

    async def _stat(self, path: str) -> FileInfo:
        return await self.observe("stat", path, self.inner._stat(path))

    async def _stat_file(self, path: str) -> FileInfo:
        return await self.observe("stat_file", path, self.inner._stat_file(path))

    async def _list(self, path: str) -> builtins.list[str]:
        return await self.observe("list", path, self.inner._list(path))

    def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        # A walk is a stream of listings the caller paces; it is not one call
        # to observe.
        return self.inner._walk(path, start_after)

    def _incomplete_writes(self, path: str) -> AsyncIterator[IncompleteWrite]:
        # A stream of listings, like a walk.
        return self.inner._incomplete_writes(path)

    async def _discard_incomplete_write(self, write: IncompleteWrite) -> None:
        await self.observe(
            "discard_incomplete_write", write.path, self.inner._discard_incomplete_write(write)
        )

    async def _move(self, source: str, dest: str) -> None:
        await self.observe("move", source, self.inner._move(source, dest))

    async def _delete(self, path: str) -> None:
        await self.observe("delete", path, self.inner._delete(path))

    async def _delete_files(self, paths: builtins.list[str]) -> None:
        where = paths[0] if paths else "/"
        await self.observe("delete_files", where, self.inner._delete_files(paths))

    async def _redirect_url(self, path: str, method: str) -> str | None:
        return await self.observe("redirect_url", path, self.inner._redirect_url(path, method))

    def _local_file(self, path: str) -> str | None:
        return self.inner._local_file(path)
