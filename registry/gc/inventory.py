"""What storage holds, as garbage collection sees it: one walk of each tree.

`repositories/` gives manifest revisions, tags, layer links and upload
sessions, each with its file's time; `blobs/` gives the content with sizes and
times. Both walks also find the `*-staged-*` files writers leave behind when
their process dies. Nothing here deletes.
"""

from __future__ import annotations

import asyncio
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


async def scan_repositories(
    driver: StorageDriver, into: Inventory, progress: Progress | None = None, root: str = ""
) -> None:
    """Add what `repositories/` (or just the repository directory `root`) holds to `into`."""
    async for info in driver.walk(root or layout.REPOSITORIES):
        into.files += 1
        if progress is not None and into.files % 1000 == 0:
            progress("scan", into.files)
        if STAGED_MARK in info.path.rpartition("/")[2]:
            into.staged.append(info)
            continue
        entry = layout.parse_repository_path(info.path)
        if entry is None:
            continue
        if entry.kind == "upload":
            into.uploads.add(info)
            continue
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


async def scan_blobs(
    driver: StorageDriver, into: Inventory, progress: Progress | None = None
) -> None:
    """Add the content under `blobs/` (and staging files there) to `into`."""
    async for info in driver.walk(layout.BLOBS):
        into.files += 1
        if progress is not None and into.files % 1000 == 0:
            progress("scan", into.files)
        parts = info.path[len(layout.BLOBS) + 1 :].split("/")
        if STAGED_MARK in parts[-1]:
            into.staged.append(info)
        elif len(parts) == 4 and parts[3] == "data":
            try:
                digest = Digest.parse(f"{parts[0]}:{parts[2]}")
            except (DigestInvalid, Unsupported):
                continue
            into.blobs[str(digest)] = info


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
