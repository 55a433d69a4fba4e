"""What storage holds, as garbage collection sees it: one walk of each tree.

`repositories/` gives manifest revisions, tags, layer links and upload
sessions, each with its file's time; `blobs/` gives the content with sizes and
times. Both walks also find the `*-staged-*` files writers leave behind when
their process dies. Nothing here deletes.

Each tree is walked in pieces side by side (`walk_split`): on S3 a walk is a
chain of listings, each waiting for the one before; on a filesystem the
directory reads and stats of one walk wait on the disk, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from registry import layout
from registry.digest import Digest
from registry.drivers.base import FileInfo, StorageDriver
from registry.errors import DigestInvalid, PathNotFound, Unsupported
from registry.services.purge import UploadAges

#: The mark that `StorageDriver.staged_writer` puts in the names of its staging files.
STAGED_MARK = "-staged-"


@dataclass(slots=True)
class TagState:
    """A tag: the digests its history holds, its current digest once read, when it was set."""

    history: set[str] = field(default_factory=set)
    digest: str | None = None
    pushed: float = 0.0


@dataclass(slots=True)
class RepositoryState:
    """One repository: manifest revisions and layer links (digest -> link time), and tags."""

    revisions: dict[str, float] = field(default_factory=dict)
    layers: dict[str, float] = field(default_factory=dict)
    tags: dict[str, TagState] = field(default_factory=dict)


@dataclass(slots=True)
class Inventory:
    """Everything one pass over storage found."""

    repositories: dict[str, RepositoryState] = field(default_factory=dict)
    blobs: dict[str, FileInfo] = field(default_factory=dict)
    staged: list[FileInfo] = field(default_factory=list)
    uploads: UploadAges = field(default_factory=UploadAges)
    files: int = 0


Progress = Callable[[str, int], None]

# A tree is walked in about this many pieces per walk the driver's bulk
# concurrency allows at once, so that a piece much larger than the others (a
# busy repository) does not leave the other walkers idle at the end.
_PIECES_PER_WALKER = 4
# How deep `walk_split` lists to find the pieces.
_SPLIT_DEPTH = 3


async def scan_repositories(
    driver: StorageDriver, into: Inventory, progress: Progress | None = None, root: str = ""
) -> None:
    """Add what `repositories/` (or just the repository directory `root`) holds to `into`."""

    def visit(info: FileInfo) -> None:
        into.files += 1
        if progress is not None and into.files % 1000 == 0:
            progress("scan", into.files)
        if STAGED_MARK in info.path.rpartition("/")[2]:
            into.staged.append(info)
            return
        entry = layout.parse_repository_path(info.path)
        if entry is None:
            return
        if entry.kind == "upload":
            into.uploads.add(info)
            return
        repo = into.repositories.setdefault(entry.name, RepositoryState())
        digest = f"{entry.algorithm}:{entry.hex}"
        if entry.kind == "revision":
            repo.revisions[digest] = info.modified
        elif entry.kind == "layer":
            repo.layers[digest] = info.modified
        elif entry.kind == "tag":
            repo.tags.setdefault(entry.tag, TagState()).pushed = info.modified
        elif entry.kind == "tag-history":
            repo.tags.setdefault(entry.tag, TagState()).history.add(digest)

    await walk_split(driver, root or layout.REPOSITORIES, visit)


async def scan_blobs(
    driver: StorageDriver, into: Inventory, progress: Progress | None = None
) -> None:
    """Add the content under `blobs/` (and staging files there) to `into`."""
    start = len(layout.BLOBS) + 1

    def visit(info: FileInfo) -> None:
        into.files += 1
        if progress is not None and into.files % 1000 == 0:
            progress("scan", into.files)
        parts = info.path[start:].split("/")
        if STAGED_MARK in parts[-1]:
            into.staged.append(info)
        elif len(parts) == 4 and parts[3] == "data":
            try:
                digest = Digest.parse(f"{parts[0]}:{parts[2]}")
            except (DigestInvalid, Unsupported):
                return
            into.blobs[str(digest)] = info

    await walk_split(driver, layout.BLOBS, visit)


async def walk_split(driver: StorageDriver, root: str, visit: Callable[[FileInfo], None]) -> None:
    """Call `visit` with every file `driver.walk(root)` yields, once each, in no set order.

    The first levels of the tree are listed until there are enough
    directories to walk side by side, as many at once as
    `driver.bulk_concurrency`. Each is walked by prefix, which every backend
    lists alike (walks by ranges of paths would depend on the backend's
    order, which SeaweedFS does not keep). Files at the levels listed are
    visited too.
    """
    pieces, files = await _split(driver, root, _PIECES_PER_WALKER * driver.bulk_concurrency)
    limit = asyncio.Semaphore(driver.bulk_concurrency)

    async def walk(path: str) -> None:
        async with limit:
            found = False
            async for info in driver.walk(path):
                found = True
                visit(info)
            if not found:
                files.append(path)  # a file listed at the last level, or an empty directory

    await asyncio.gather(*(walk(path) for path in pieces))

    async def visit_file(path: str) -> None:
        async with limit:
            with contextlib.suppress(PathNotFound):
                visit(await driver.stat_file(path))

    await asyncio.gather(*(visit_file(path) for path in files))


async def _split(driver: StorageDriver, root: str, pieces: int) -> tuple[list[str], list[str]]:
    """Paths below `root` whose walks together walk it, about `pieces` of them or as many
    as `_SPLIT_DEPTH` levels hold; and the paths listed on the way that held nothing
    to list (files, or empty directories)."""
    level = [root]
    files: list[str] = []
    for _ in range(_SPLIT_DEPTH):
        below: list[str] = []
        for path in level:
            try:
                below += await driver.list(path)
            except PathNotFound:
                if path != root:
                    files.append(path)
        level = below
        if len(level) >= pieces:
            break
    return level, files


async def resolve_tags(driver: StorageDriver, repositories: dict[str, RepositoryState]) -> None:
    """Set every tag's current digest: its one history entry, else its `current` link.

    A tag whose link is unreadable keeps `digest` None: it reaches nothing,
    but it is not deleted on that account either.
    """
    reads: list[Awaitable[None]] = []
    limit = asyncio.Semaphore(driver.bulk_concurrency)

    async def read(name: str, tag: str, state: TagState) -> None:
        async with limit:
            try:
                text = (await driver.get_content(layout.tag_current_link(name, tag))).decode()
                state.digest = str(Digest.parse(text.strip()))
            except (PathNotFound, UnicodeDecodeError, DigestInvalid, Unsupported):
                state.digest = None

    for name, repo in repositories.items():
        for tag, state in repo.tags.items():
            if state.pushed == 0.0:
                continue  # a history without a current link: the tag was deleted
            if len(state.history) == 1:
                state.digest = next(iter(state.history))
            else:
                reads.append(read(name, tag, state))
    await asyncio.gather(*reads)
