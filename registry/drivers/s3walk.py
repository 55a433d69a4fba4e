"""Walking a long S3 listing in pieces, side by side, for `S3Driver._walk`.

A ListObjectsV2 listing is a chain of pages, each asked for once the last
has come: a walk of a large bucket (garbage collection's, the index's at
start-up) waited on every page in turn. Here the tree is split into
directories by delimited listings, and up to `bulk_concurrency` of them are
listed at once, each at most `_PAGES_AHEAD` pages ahead of what has been
yielded, still in byte order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from registry.drivers.base import FileInfo

if TYPE_CHECKING:
    from registry.drivers.s3 import S3Driver

# Directories are found by splitting the tree at most this many levels deep.
_SPLIT_LEVELS = 3
_PAGES_AHEAD = 2


async def walk_in_pieces(driver: S3Driver, path: str) -> AsyncIterator[FileInfo]:
    """Every file below `path`, in byte order, its directories listed side by side.

    A listing's error is raised where the walk reaches its directory; a walk
    closed midway cancels the listings still running.
    """
    pieces = await _pieces(driver, path)
    lists: dict[int, tuple[asyncio.Task[None], asyncio.Queue[Any]]] = {}

    async def fill(directory: str, queue: asyncio.Queue[Any]) -> None:
        try:
            async for page in driver._pages(directory, Prefix=driver.key(directory) + "/"):
                await queue.put(list(driver._files(page)))
        except Exception as exc:  # raised where the piece is read
            await queue.put(exc)
            return
        await queue.put(None)

    try:
        for number, piece in enumerate(pieces):
            for ahead in range(number, min(number + driver.bulk_concurrency, len(pieces))):
                directory = pieces[ahead]
                if isinstance(directory, str) and ahead not in lists:
                    queue: asyncio.Queue[Any] = asyncio.Queue(_PAGES_AHEAD)
                    lists[ahead] = (asyncio.ensure_future(fill(directory, queue)), queue)
            if isinstance(piece, FileInfo):
                yield piece
                continue
            _, queue = lists[number]
            while (files := await queue.get()) is not None:
                if isinstance(files, Exception):
                    raise files
                for info in files:
                    yield info
            # Only once drained: a walk closed midway cancels this one too.
            del lists[number]
    finally:
        for task, _ in lists.values():
            task.cancel()


async def _pieces(driver: S3Driver, path: str) -> list[FileInfo | str]:
    """The files directly below `path` and the directories to list whole, in key order.

    Directories are split into their own files and directories, a level at a
    time, until there are `bulk_concurrency` of them or `_SPLIT_LEVELS`
    levels were split: one delimited listing each.
    """
    pieces: list[FileInfo | str] = [path]
    for _ in range(_SPLIT_LEVELS):
        directories = [piece for piece in pieces if isinstance(piece, str)]
        if not directories or len(directories) >= driver.bulk_concurrency:
            break
        children = iter(await asyncio.gather(*(_children(driver, d) for d in directories)))
        pieces = [
            child
            for piece in pieces
            for child in (next(children) if isinstance(piece, str) else [piece])
        ]
    return pieces


async def _children(driver: S3Driver, directory: str) -> list[FileInfo | str]:
    """The files and directories directly below `directory`, in key order."""
    prefix = driver.key(directory) + "/"
    found: list[tuple[str, FileInfo | str]] = []
    async for page in driver._pages(directory, Prefix=prefix, Delimiter="/"):
        found.extend((driver.key(info.path), info) for info in driver._files(page))
        found.extend(
            (item["Prefix"], driver._path(item["Prefix"][:-1]))
            for item in page.get("CommonPrefixes", ())
        )
    return [piece for _, piece in sorted(found, key=lambda pair: pair[0])]
