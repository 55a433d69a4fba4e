"""What storage holds of repositories, read from listings of Distribution's layout.

The index (`registry.services.index`) is built from these: `discover_names`
finds the repositories, and a `RepositoryScan` fed the link files of a
listing turns them into a `RepositoryIndex`, reading a tag's `current/link`
only where the listing cannot say where the tag points.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from registry import layout
from registry.digest import Digest
from registry.drivers.base import FileInfo, StorageDriver
from registry.errors import DigestInvalid, PathNotFound, Unsupported

log = logging.getLogger(__name__)

# How long after a tag's current link was written a read of it must come for a
# reconciliation to trust an unchanged modification time: a storage clock of
# whole seconds, and hosts' clocks up to this far apart.
_UNCHANGED_AFTER = 10.0

# Concurrent listings of the start-up discovery, which has the storage to
# itself: many short listings side by side, where one long chain would crawl.
_DISCOVERY_CONCURRENCY = 64


@dataclass(slots=True)
class RepositoryIndex:
    """What one repository holds: tags, manifest revisions and linked blobs (digests as text)."""

    tags: dict[str, str] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)
    #: When each tag was last pointed at its digest (seconds since the epoch).
    pushed: dict[str, float] = field(default_factory=dict)
    #: When each tag's current link, written at `pushed`, was read (this process's clock).
    read_at: dict[str, float] = field(default_factory=dict)
    # Sorted views rebuilt lazily: tag listings are frequent, tag writes rarer.
    _sorted_tags: list[str] | None = None

    def sorted_tags(self) -> list[str]:
        if self._sorted_tags is None:
            self._sorted_tags = sorted(self.tags)
        return self._sorted_tags

    def is_empty(self) -> bool:
        return not (self.tags or self.manifests or self.layers)


async def discover_names(driver: StorageDriver) -> set[str]:
    """Names of the repositories `driver` holds: directories with `_manifests` or `_layers`.

    Found by listing `repositories/` down level by level, concurrently.
    """
    names: set[str] = set()
    limit = asyncio.Semaphore(_DISCOVERY_CONCURRENCY)
    base = len(layout.REPOSITORIES) + 1

    async def visit(directory: str) -> None:
        async with limit:
            try:
                children = await driver.list(directory)
            except PathNotFound:
                return
        nested = []
        for child in children:
            leaf = child.rpartition("/")[2]
            if leaf in ("_manifests", "_layers"):
                names.add(directory[base:])
            elif not leaf.startswith("_"):
                nested.append(child)
        await asyncio.gather(*(visit(child) for child in nested))

    await visit(layout.REPOSITORIES)
    return names


class RepositoryScan:
    """The link files of one repository found by a listing, turned into its index."""

    def __init__(self) -> None:
        self.repo = RepositoryIndex()
        # tag -> digests of its index/ history, and when its current link was written
        self.history: dict[str, list[str]] = {}
        self.current: dict[str, float] = {}

    def add(self, entry: layout.RepositoryEntry, info: FileInfo) -> None:
        if entry.kind == "upload":
            return
        if entry.kind == "tag":
            self.current[entry.tag] = info.modified
            return
        digest = _digest_text(entry.algorithm, entry.hex, info.path)
        if digest is None:
            return
        if entry.kind == "layer":
            self.repo.layers.add(digest)
        elif entry.kind == "revision":
            self.repo.manifests.add(digest)
        elif entry.kind == "tag-history":
            self.history.setdefault(entry.tag, []).append(digest)

    async def resolve(
        self, driver: StorageDriver, name: str, known: RepositoryIndex | None = None
    ) -> RepositoryIndex:
        """The repository's index: each tag with a current link is set from its history
        when that names one digest, from `known` when its current link was not
        rewritten since, and else from reading the current link."""
        repo = self.repo
        now = time.time()
        ambiguous: list[str] = []
        for tag, written in self.current.items():
            digests = self.history.get(tag, [])
            previous = known.tags.get(tag) if known is not None else None
            if len(digests) == 1:
                repo.tags[tag] = digests[0]
                repo.read_at[tag] = now
            elif (
                known is not None
                and previous in digests
                and known.pushed.get(tag) == written
                # Storage times may count whole seconds, and clocks differ: a link
                # rewritten soon after it was read could show the same time.
                and known.read_at.get(tag, 0.0) - written > _UNCHANGED_AFTER
            ):
                repo.tags[tag] = known.tags[tag]
                repo.read_at[tag] = known.read_at[tag]
            else:
                ambiguous.append(tag)
        limit = asyncio.Semaphore(driver.bulk_concurrency)

        async def read_current(tag: str) -> None:
            async with limit:
                try:
                    text = (await driver.get_content(layout.tag_current_link(name, tag))).decode()
                    digest = str(Digest.parse(text.strip()))
                except (PathNotFound, UnicodeDecodeError, DigestInvalid, Unsupported):
                    log.warning("skipping tag %s:%s: unreadable current link", name, tag)
                    return
                repo.tags[tag] = digest
                repo.read_at[tag] = now

        await asyncio.gather(*(read_current(tag) for tag in ambiguous))
        repo.pushed = {tag: self.current[tag] for tag in repo.tags}
        return repo


def _digest_text(algorithm: str, hexpart: str, path: str) -> str | None:
    try:
        return str(Digest.parse(f"{algorithm}:{hexpart}"))
    except (DigestInvalid, Unsupported):
        log.warning("skipping %s: not a valid digest path", path)
        return None
