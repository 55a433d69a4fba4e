"""The storage-driver interface every backend implements.

A driver stores opaque bytes under slash-separated paths and knows nothing of
HTTP, manifests or repositories. Paths are absolute (`/docker/registry/v2/...`),
made of components drawn from `[A-Za-z0-9._-]`; the base class checks every path
before a driver sees it, so drivers may trust the paths they are given.

The public methods (no underscore) validate and delegate to the protected
`_`-prefixed methods that a driver implements; a new driver is written against
the contracts stated on the public methods. Cross-cutting behaviour (metrics,
limits) belongs in a wrapper driver, not in each backend.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from registry.errors import InvalidOffset, InvalidPath, PathNotFound, StorageError

_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._-]+)+")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What `stat` and `walk` say of a path; `size` and `modified` are 0 for directories."""

    path: str
    size: int
    modified: float
    is_dir: bool


@dataclass(frozen=True, slots=True)
class IncompleteWrite:
    """Content a writer started at `path` and never finished, invisible to `walk`.

    `started` is when (seconds since the epoch); `handle` is the driver's own
    name for it, meaningful only to `discard_incomplete_write`.
    """

    path: str
    started: float
    handle: str


class FileWriter(ABC):
    """A resumable writer for one path, obtained from `StorageDriver.writer`.

    Bytes written are not guaranteed to be readable at the path until `commit()`.
    Exactly one of `close()`, `commit()` or `cancel()` ends a writer; any call
    after that raises `InvalidOffset`. The caller guarantees that at most one
    writer is open on a path at a time.

    `write`, `close`, `commit` and `commit_to` raise `PathNotFound` when what
    the writer resumed is gone from storage: its path was deleted meanwhile,
    or (S3) an earlier writer's commit completed the content and died before
    removing what let it be resumed. No further byte can be added then; the
    path holds whatever that earlier commit left, if anything.
    """

    # The end rule, for drivers' writers: `_check_open()` before any work,
    # `_end()` in `close`, `commit` and `cancel`; both need `_begin()` first.
    _ended = False

    def _begin(self, driver: str, path: str) -> None:
        self._ended = False
        self._where = (driver, path)

    def _check_open(self) -> None:
        if self._ended:
            raise InvalidOffset(*self._where)

    def _end(self) -> None:
        self._check_open()
        self._ended = True

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes written so far, counting those of earlier writers this one resumed."""

    @property
    def in_memory(self) -> bool:
        """Whether no byte written has reached storage yet, so that `commit_to` any path
        costs one plain write, as cheap as asking whether content is there.

        False unless the driver knows it so (S3: less than a part written).
        """
        return False

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Append `data`. On error, the bytes of this call may or may not be kept."""

    @abstractmethod
    async def close(self) -> None:
        """Persist what was written so that `writer(path, append=True)` resumes at `size`.

        The content stays uncommitted: it may not be readable at the path.
        """

    @abstractmethod
    async def commit(self) -> None:
        """Make the whole content readable at the path. The writer cannot be resumed after."""

    @abstractmethod
    async def commit_to(self, path: str) -> None:
        """Make the whole content readable at `path` instead, replacing what is there.

        The same as `commit()` then `StorageDriver.move` to `path`, and as
        safe: `path` gets the content whole or not at all, and on error the
        writer's own path keeps what it held; done in fewer steps where the
        backend allows. The writer cannot be resumed after.
        """

    @abstractmethod
    async def cancel(self) -> None:
        """Discard everything written, including by earlier writers resumed here."""


class StorageDriver(ABC):
    """An async backend that stores bytes under paths.

    Errors come out as `registry.errors.StorageError` subclasses naming the
    driver: `PathNotFound` for a missing path, `InvalidPath` for a malformed
    one, `InvalidOffset` for a read or resume past the end, and plain
    `StorageError` for a backend fault (after the driver's own retries).
    """

    #: Short name used in errors and logs, e.g. "filesystem" or "s3".
    name: str = "driver"

    #: How many operations bulk work (the tag index's warm-up) keeps in flight
    #: at once: enough to hide the backend's latency, few enough that requests
    #: from clients are not queued behind it.
    bulk_concurrency: int = 16

    async def open(self) -> None:
        """Acquire long-lived resources (client sessions). Called once before use."""

    async def close(self) -> None:
        """Release what `open` acquired. The driver is not used afterwards."""

    def with_bulk_concurrency(self, limit: int) -> StorageDriver:
        """This driver, sharing its connections and what it stores, with bulk work (walks,
        `delete_files`) keeping at most `limit` requests in flight.

        For background work on storage that clients are served from meanwhile.
        `bulk_concurrency` is only ever narrowed, never widened past this
        driver's. The view is neither opened nor closed: it works while this
        driver is open.
        """
        view = copy.copy(self)
        view.bulk_concurrency = max(1, min(self.bulk_concurrency, limit))
        return view

    def check_path(self, path: str) -> str:
        """Return `path` if it is a valid driver path, else raise `InvalidPath`."""
        if not _PATH_RE.fullmatch(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
            raise InvalidPath(self.name, path[:300])
        return path

    async def get_content(self, path: str) -> bytes:
        """The whole content at `path`; meant for small objects (links, manifests).

        Raises `PathNotFound` if nothing was committed there.
        """
        return await self._get_content(self.check_path(path))

    async def put_content(self, path: str, data: bytes) -> None:
        """Store `data` at `path`, replacing what was there, atomically.

        A concurrent reader sees either the old content or the new, never a
        mix or a partial write; on error the old content is left in place.
        """
        await self._put_content(self.check_path(path), data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """A stream of the content at `path` from `offset`, `length` bytes or to the end.

        `PathNotFound` and `InvalidOffset` (offset beyond the size) are raised
        by this call, before any byte is produced, so an HTTP layer can still
        answer with an error status. The caller exhausts the stream or calls
        its `aclose()`; chunks are of driver-chosen size.
        """
        if offset < 0 or (length is not None and length < 0):
            raise InvalidOffset(self.name, path)
        return await self._reader(self.check_path(path), offset, length)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer for `path`: a fresh one, or with `append` one resuming a closed writer.

        `append=True` on a path with no closed writer raises `PathNotFound`.
        A fresh writer discards any uncommitted content of an earlier writer.
        """
        return await self._writer(self.check_path(path), append)

    async def resume_or_start_writer(self, path: str) -> tuple[FileWriter, bool]:
        """The writer `writer(path, append=True)` returns, or if `path` has no closed
        writer a fresh one, as `writer(path)`; and whether it resumed one.

        For a caller that cannot tell which to expect (the first chunk of an
        upload may follow another one): a backend that must load a writer's
        saved state to make either (S3) loads it once.
        """
        return await self._resume_or_start_writer(self.check_path(path))

    async def staged_writer(self, path: str) -> FileWriter:
        """A one-shot writer whose whole content replaces `path` atomically at `commit()`.

        Until `commit()` nothing new is readable at `path`, and staged writers
        of the same path may run at once without disturbing each other: each
        commit replaces the content whole, the last one wins. `close()` is
        `cancel()`: a staged writer cannot be resumed. A crash may leave its
        bytes behind, unreadable at `path`, for garbage collection.
        """
        return await self._staged_writer(self.check_path(path))

    async def stat(self, path: str) -> FileInfo:
        """Information on a committed file or a directory; `PathNotFound` if neither."""
        return await self._stat(self.check_path(path))

    async def stat_file(self, path: str) -> FileInfo:
        """Information on the committed file at `path`; `PathNotFound` if there is none,
        a directory at `path` included.

        For callers that only care about a file (a link, a blob's content): a
        backend that must ask twice to tell a missing path from a directory
        (S3) asks once.
        """
        return await self._stat_file(self.check_path(path))

    async def list(self, path: str) -> builtins.list[str]:
        """Full paths of the direct children of directory `path`, sorted.

        Raises `PathNotFound` if the directory does not exist (is empty).
        """
        return await self._list(self.check_path(path))

    def walk(self, path: str, start_after: str | None = None) -> AsyncIterator[FileInfo]:
        """Every committed file below `path`, recursively, in ascending byte order of path.

        Directories are not yielded. With `start_after`, only files whose path
        sorts after it are yielded (a resumable listing). A missing `path`
        yields nothing.
        """
        return self._walk(self.check_path(path), start_after)

    def incomplete_writes(self, path: str) -> AsyncIterator[IncompleteWrite]:
        """Writes below `path` begun and never committed, cancelled or closed, that `walk` hides.

        What a process that died mid-write leaves on a backend that keeps
        unfinished content out of sight (S3 multipart uploads); a closed
        writer's content, resumable, is not one of them, nor is a write that
        `walk` shows (staging files). The default yields nothing. A write in
        progress is listed too: the caller judges by `started`.
        """
        return self._incomplete_writes(self.check_path(path))

    async def discard_incomplete_write(self, write: IncompleteWrite) -> None:
        """Free what `write` holds; one already gone (finished or discarded) is fine."""
        await self._discard_incomplete_write(write)

    async def move(self, source: str, dest: str) -> None:
        """Move committed content from `source` to `dest`, replacing `dest`.

        `dest` appears whole or not at all. Raises `PathNotFound` if `source`
        is missing; on error `source` is left in place.
        """
        await self._move(self.check_path(source), self.check_path(dest))

    async def delete(self, path: str) -> None:
        """Delete the file at `path`, or the directory and everything below it.

        Raises `PathNotFound` if there is nothing at `path`.
        """
        await self._delete(self.check_path(path))

    async def delete_files(self, paths: Sequence[str]) -> None:
        """Delete the files at `paths`, then the directory holding each if that left it
        empty; a path with no file is skipped, not an error.

        For callers that know which files a directory holds (an upload
        session's, and every file garbage collection found in its walk): S3
        deletes up to 1,000 in one request, where `delete` of a directory must
        list it first, and the filesystem deletes a long list side by side in
        worker threads. A call takes about as long as its files together take
        to delete; bulk callers size their calls. Files are deleted in no
        promised order. On error (`StorageError`) any of them may have been
        deleted; another call with the same paths deletes the rest. A closed
        writer's saved state on one of the paths is left, as `delete` of the
        path leaves it.
        """
        await self._delete_files([self.check_path(path) for path in paths])

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL a client may fetch the content from directly, or None to be served by us.

        A driver that returns a URL takes responsibility for its expiry; the
        content must exist (the caller has checked).
        """
        return await self._redirect_url(self.check_path(path), method)

    def local_file(self, path: str) -> str | None:
        """The local filesystem path holding the content, if any, for zero-copy serving."""
        return self._local_file(self.check_path(path))

    def _local_file(self, path: str) -> str | None:
        return None

    async def _staged_writer(self, path: str) -> FileWriter:
        # Any driver can stage beside the path and move over it on commit; a
        # driver whose writers are invisible until commit can do better.
        staging = f"{path}-staged-{uuid.uuid4().hex}"
        return _StagedWriter(self, await self._writer(staging, False), staging, path)

    async def _redirect_url(self, path: str, method: str) -> str | None:
        return None

    async def _resume_or_start_writer(self, path: str) -> tuple[FileWriter, bool]:
        try:
            return await self._writer(path, True), True
        except PathNotFound:
            return await self._writer(path, False), False

    async def _incomplete_writes(self, path: str) -> AsyncIterator[IncompleteWrite]:
        return
        yield  # an async generator that yields nothing

    async def _discard_incomplete_write(self, write: IncompleteWrite) -> None:
        return None

    async def _delete_files(self, paths: builtins.list[str]) -> None:
        # Drivers whose directories exist only through what they hold lose
        # them with their last file.
        for path in paths:
            with contextlib.suppress(PathNotFound):
                await self._delete(path)

    async def _stat_file(self, path: str) -> FileInfo:
        info = await self._stat(path)
        if info.is_dir:
            raise PathNotFound(self.name, path)
        return info

    @abstractmethod
    async def _get_content(self, path: str) -> bytes: ...

    @abstractmethod
    async def _put_content(self, path: str, data: bytes) -> None: ...

    @abstractmethod
    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]: ...

    @abstractmethod
    async def _writer(self, path: str, append: bool) -> FileWriter: ...

    @abstractmethod
    async def _stat(self, path: str) -> FileInfo: ...

    @abstractmethod
    async def _list(self, path: str) -> builtins.list[str]: ...

    @abstractmethod
    def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]: ...

    @abstractmethod
    async def _move(self, source: str, dest: str) -> None: ...

    @abstractmethod
    async def _delete(self, path: str) -> None: ...


class _StagedWriter(FileWriter):
    """A fresh writer of a unique staging path, moved over the real path on commit."""

    def __init__(self, driver: StorageDriver, inner: FileWriter, staging: str, path: str) -> None:
        self._driver = driver
        self._inner = inner
        self._staging = staging
        self._path = path

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self.cancel()

    async def commit(self) -> None:
        await self.commit_to(self._path)

    async def commit_to(self, path: str) -> None:
        self._driver.check_path(path)
        await self._inner.commit()
        try:
            await self._driver.move(self._staging, path)
        except BaseException:
            with contextlib.suppress(StorageError):
                await self._driver.delete(self._staging)
            raise

    async def cancel(self) -> None:
        await self._inner.cancel()
