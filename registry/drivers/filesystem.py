"""A storage driver keeping content in files under a local directory.

Driver path `/a/b` is the file `<root>/a/b`, so a tree written by
Distribution's filesystem driver is served as-is. Lookups of one file (`stat`,
`open`) and reads of small files run on the event loop: served from the page
cache they take microseconds, a tenth of a worker-thread round trip.
Everything else runs in worker threads: large reads, directory scans, and
every write, because the kernel may throttle a write for as long as it takes
to flush dirty pages.

Names that are not valid driver path components (`put_content`'s temporary
files, `lost+found`) are invisible to `list` and `walk`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from io import FileIO
from pathlib import Path

from registry.drivers.base import FileInfo, FileWriter, StorageDriver
from registry.errors import InvalidOffset, PathNotFound, StorageError

#: Files up to this size are read on the event loop rather than in a thread.
INLINE_READ_MAX = 64 * 1024

#: Bytes per chunk yielded by `reader`.
CHUNK_SIZE = 1024 * 1024

_COMPONENT_RE = re.compile(r"[A-Za-z0-9._-]+")

# Files a walk reads per trip to a worker thread.
_WALK_BATCH = 1000

# What the OS raises when a lookup finds no file at a path: the path is
# absent, a parent is a file, or a directory sits where a file was expected.
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
# Fewer files than this a thread go in one thread: an upload session's few
# files are not worth a thread hop each.
_FILES_PER_THREAD = 64


class FilesystemDriver(StorageDriver):
    """Stores content as files below `root`, which `open()` creates if needed.

    Uncommitted content of a writer sits at its final path, so `stat`, `list`
    and `walk` see it like committed content, and `writer(append=True)`
    resumes committed content too. An empty directory left behind by `delete`
    is reported by `stat` but `list` raises `PathNotFound` for it, as for a
    missing one. Nothing is fsynced: content survives the process, not a
    power cut.
    """

    name = "filesystem"
    # Every walk and read is a job for asyncio's default executor, a handful of
    # threads (cores + 4) taking jobs in turn: a warm-up with more jobs queued
    # would make a client's request wait for all of them.
    bulk_concurrency = 4

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.abspath(root)

    async def open(self) -> None:
        """Create the root directory if it does not exist."""
        await asyncio.to_thread(os.makedirs, self.root, exist_ok=True)

    def _local_file(self, path: str) -> str | None:
        full = self._full(path)
        try:
            return full if stat.S_ISREG(os.stat(full).st_mode) else None
        except OSError:
            return None

    def _full(self, path: str) -> str:
        # check_path admits no `.`/`..` components, so the result stays under root.
        return self.root + path

    async def _get_content(self, path: str) -> bytes:
        full = self._full(path)
        with _lookup_errors(self.name, path):
            data = _read_if_small(full)
            if data is None:
                data = await asyncio.to_thread(Path(full).read_bytes)
        return data

    async def _put_content(self, path: str, data: bytes) -> None:
        with _storage_errors(self.name, path):
            await asyncio.to_thread(_replace_file, self._full(path), data)

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        full = self._full(path)
        with _lookup_errors(self.name, path):
            info = os.stat(full)
        if stat.S_ISDIR(info.st_mode):
            raise PathNotFound(self.name, path)
        if offset > info.st_size:
            raise InvalidOffset(self.name, path)
        return self._chunks(path, offset, length)

    async def _chunks(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        # Opened on first iteration, not by `reader`: a stream closed before
        # it started runs no code, so a file opened earlier would leak.
        with _lookup_errors(self.name, path):
            file = FileIO(self._full(path), "r")
        loop = asyncio.get_running_loop()
        read: asyncio.Future[bytes] | None = None
        remaining = length
        try:
            file.seek(offset)
            while remaining is None or remaining > 0:
                size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                read = loop.run_in_executor(None, file.read, size)
                # Shielded so that, if the consumer is cancelled, `read` stays
                # pending until its thread really ends; see the `finally`.
                with _storage_errors(self.name, path):
                    chunk = await asyncio.shield(read)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            if read is None or read.done():
                file.close()
            else:
                # Closing under a running read could let the descriptor number
                # be reused and that thread read from someone else's file.
                read.add_done_callback(lambda done: _close_after(done, file))

    async def _writer(self, path: str, append: bool) -> FileWriter:
        full = self._full(path)
        if append:
            with _lookup_errors(self.name, path):
                info = os.stat(full)
            if not stat.S_ISREG(info.st_mode):
                raise PathNotFound(self.name, path)
            return _FileWriter(self, path, full, info.st_size)
        # Created now, not on the first write, so that a writer closed before
        # writing anything can be resumed.
        with _storage_errors(self.name, path):
            await asyncio.to_thread(_truncate, full)
        return _FileWriter(self, path, full, 0)

    async def _stat(self, path: str) -> FileInfo:
        with _lookup_errors(self.name, path):
            info = os.stat(self._full(path))
        if stat.S_ISDIR(info.st_mode):
            return FileInfo(path, 0, 0.0, True)
        return FileInfo(path, info.st_size, info.st_mtime, False)

    async def _list(self, path: str) -> list[str]:
        with _lookup_errors(self.name, path):
            names = await asyncio.to_thread(_child_names, self._full(path))
        if not names:
            raise PathNotFound(self.name, path)
        return sorted(f"{path}/{name}" for name in names)

    async def _walk(self, path: str, start_after: str | None) -> AsyncIterator[FileInfo]:
        # The tree is read in a worker thread a batch of files at a time: a
        # thread hop per directory made a start-up walk of Distribution's
        # layout (several directories per tag) cost ~1 ms of CPU per tag.
        files = _walk_files(path, self._full, start_after)
        while True:
            with _storage_errors(self.name, path):
                batch = await asyncio.to_thread(_take, files, _WALK_BATCH)
            for info in batch:
                yield info
            if len(batch) < _WALK_BATCH:
                return

    async def _move(self, source: str, dest: str) -> None:
        with _lookup_errors(self.name, source):
            info = os.stat(self._full(source))
        # Only files are content; a directory is no more movable than readable.
        if stat.S_ISDIR(info.st_mode):
            raise PathNotFound(self.name, source)
        try:
            await asyncio.to_thread(_move_file, self._full(source), self._full(dest))
        except FileNotFoundError as exc:
            # Deleted since the stat; any other fault is at the destination.
            raise PathNotFound(self.name, source) from exc
        except OSError as exc:
            raise StorageError(self.name, dest, exc.strerror) from exc

    async def _delete(self, path: str) -> None:
        with _lookup_errors(self.name, path):
            await asyncio.to_thread(_delete_tree, self._full(path))

    async def _delete_files(self, paths: list[str]) -> None:
        # A long list (garbage collection's) is split among worker threads:
        # unlinking is mostly waiting on the filesystem, and four threads
        # deleted 2.6 times as fast as one. In contiguous pieces, so that the
        # files of one directory mostly go in one thread; where they do not,
        # the thread that unlinks a directory's last file removes it.
        fulls = [self._full(path) for path in paths]
        threads = max(1, min(self.bulk_concurrency, len(fulls) // _FILES_PER_THREAD))
        share = -(-len(fulls) // threads)
        with _storage_errors(self.name, paths[0] if paths else "/"):
            await asyncio.gather(
                *(
                    asyncio.to_thread(_delete_files, fulls[start : start + share])
                    for start in range(0, len(fulls), share or 1)
                )
            )


class _FileWriter(FileWriter):
    """Appends to the file at the final path; committing it has nothing left to do.

    Each write opens the file for itself, so the writer holds no descriptor: a
    writer abandoned without `close()`, or a write cancelled while its thread
    runs, leaks nothing.
    """

    def __init__(self, driver: FilesystemDriver, path: str, full: str, size: int) -> None:
        self._begin(driver.name, path)
        self._driver = driver
        self._path = path
        self._full = full
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        self._check_open()
        # Counted in the thread as bytes land, so `size` stays exact after a
        # partial failure.
        with _storage_errors(self._driver.name, self._path):
            await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        # No O_CREAT: if the file was deleted under the writer, fail rather
        # than start a file holding only the tail.
        fd = os.open(self._full, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                self._size += written
                view = view[written:]
        finally:
            os.close(fd)

    async def close(self) -> None:
        self._end()

    async def commit(self) -> None:
        self._end()

    async def commit_to(self, path: str) -> None:
        self._driver.check_path(path)
        self._end()
        await self._driver.move(self._path, path)

    async def cancel(self) -> None:
        self._end()
        with _storage_errors(self._driver.name, self._path):
            await asyncio.to_thread(_remove_if_present, self._full)


@contextmanager
def _lookup_errors(driver: str, path: str) -> Iterator[None]:
    """Raise `PathNotFound` for a missing file, `StorageError` for other OS errors."""
    try:
        yield
    except _MISSING as exc:
        raise PathNotFound(driver, path) from exc
    except OSError as exc:
        raise StorageError(driver, path, exc.strerror) from exc


@contextmanager
def _storage_errors(driver: str, path: str) -> Iterator[None]:
    """Raise `StorageError` for any OS error: a write never answers "not found"."""
    try:
        yield
    except OSError as exc:
        raise StorageError(driver, path, exc.strerror) from exc


def _close_after(read: asyncio.Future[bytes], file: FileIO) -> None:
    file.close()
    # Retrieved so that asyncio does not log the abandoned read's error.
    if not read.cancelled():
        read.exception()


def _read_if_small(full: str) -> bytes | None:
    """The content of file `full` if it is at most `INLINE_READ_MAX` bytes, else None.

    A larger file is for a thread to reopen and read: were this descriptor
    shared with the thread, a cancelled caller could close it under the read.
    """
    with open(full, "rb") as file:
        if os.fstat(file.fileno()).st_size <= INLINE_READ_MAX:
            return file.read()
    return None


def _replace_file(full: str, data: bytes) -> None:
    parent = os.path.dirname(full)
    os.makedirs(parent, exist_ok=True)
    # A fresh random name per call, so concurrent writers never share a
    # temporary file; `~` keeps it out of `list` and `walk`.
    temp = os.path.join(parent, f"~tmp-{secrets.token_hex(8)}")
    try:
        with open(temp, "xb") as file:
            file.write(data)
        os.replace(temp, full)
    except BaseException:
        _remove_if_present(temp)
        raise


def _truncate(full: str) -> None:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb"):
        pass


def _child_names(full: str) -> list[str]:
    with os.scandir(full) as entries:
        return [entry.name for entry in entries if _COMPONENT_RE.fullmatch(entry.name)]


def _walk_files(
    path: str, full: Callable[[str], str], start_after: str | None
) -> Iterator[FileInfo]:
    """Every file below `path` in byte order, after `start_after`; reads a directory at a time.

    A stack of the unvisited entries of each open directory: memory is one
    listing per level, not the tree.
    """
    stack = [iter(_scan_dir(path, full(path)))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif isinstance(entry, FileInfo):
            if start_after is None or entry.path > start_after:
                yield entry
        else:
            prefix = f"{entry}/"
            # Every path below starts with `prefix`; if `start_after` sorts
            # after `prefix` but does not start with it, all of them sort
            # before it and the directory need not be read.
            if start_after is None or start_after < prefix or start_after.startswith(prefix):
                stack.append(iter(_scan_dir(entry, full(entry))))


def _take(files: Iterator[FileInfo], n: int) -> list[FileInfo]:
    return list(itertools.islice(files, n))


def _scan_dir(path: str, full: str) -> list[FileInfo | str]:
    """Entries of directory `full`, sorted so that walking them gives byte order.

    A directory `d` sorts as `d/`, the prefix of every path below it: `d-x`
    then comes before `d/x`, since `-` and `.` sort before `/`. A missing
    directory has no entries.
    """
    keyed: list[tuple[str, FileInfo | str]] = []
    try:
        with os.scandir(full) as entries:
            for entry in entries:
                if not _COMPONENT_RE.fullmatch(entry.name):
                    continue
                child = f"{path}/{entry.name}"
                # Links to directories are not followed, so a cycle cannot
                # make a walk endless.
                if entry.is_dir(follow_symlinks=False):
                    keyed.append((f"{entry.name}/", child))
                elif entry.is_file():
                    try:
                        info = entry.stat()
                    except FileNotFoundError:
                        continue  # deleted since the scan
                    keyed.append((entry.name, FileInfo(child, info.st_size, info.st_mtime, False)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


def _move_file(source: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(source, dest)


def _delete_tree(full: str) -> None:
    if stat.S_ISDIR(os.lstat(full).st_mode):
        shutil.rmtree(full)
    else:
        os.unlink(full)


def _delete_files(fulls: list[str]) -> None:
    for full in fulls:
        with suppress(*_MISSING):
            os.unlink(full)
    for directory in sorted({os.path.dirname(full) for full in fulls}, reverse=True):
        # Not empty (or gone already) is fine: only emptied directories go.
        with suppress(OSError):
            os.rmdir(directory)


def _remove_if_present(full: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(full)
