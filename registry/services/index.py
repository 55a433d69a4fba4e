"""The in-memory index of repositories, tags, manifests and blob links.

Tag and manifest look-ups (the hot path of a `docker pull` storm) are answered
from here and never walk storage. The index is a cache of what storage says:
every write reaches storage first and the index after, so a crash between the
two loses nothing that was acknowledged, and the index is rebuilt at start-up.

Start-up only discovers which repositories exist (a directory listing per
level of their names); the registry serves from then on. Each repository's
tags, manifests and links are loaded by walking it: all of them in the
background (`warm`), and any one at once when a request needs it first
(`load`), so a large bucket costs seconds of start-up, not minutes. A tag's
digest is read from its `current/link` only when its `index/` history holds
more than one digest; otherwise the single history entry (known from the
listing alone) is it, which saves one storage read per tag.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import time
from dataclasses import dataclass, field

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import DigestInvalid, PathNotFound, StorageError, Unsupported

log = logging.getLogger(__name__)

# Concurrent listings of the start-up discovery, which has the storage to
# itself: many short listings side by side, where one long chain would crawl.
_DISCOVERY_CONCURRENCY = 64


@dataclass(slots=True)
class RepositoryIndex:
    """What one repository holds: tags, manifest revisions and linked blobs (digests as text)."""

    tags: dict[str, str] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)
    # Sorted views rebuilt lazily: tag listings are frequent, tag writes rarer.
    _sorted_tags: list[str] | None = None

    def sorted_tags(self) -> list[str]:
        if self._sorted_tags is None:
            self._sorted_tags = sorted(self.tags)
        return self._sorted_tags

    def is_empty(self) -> bool:
        return not (self.tags or self.manifests or self.layers)


class TagIndex:
    """Repositories, tags, manifests and blob links, all in memory.

    A repository found in storage but not yet loaded is *pending*: it is
    listed by `repositories()`, but anything else about it needs `await
    load(name)` first (asking before is a programming error and raises
    `RuntimeError`). Queries are synchronous and never fail on a missing
    repository: callers decide whether absence is an error. Mutators are
    called only after the corresponding storage write succeeded.
    """

    def __init__(self, driver: StorageDriver | None = None) -> None:
        self._driver = driver
        self._repos: dict[str, RepositoryIndex] = {}
        self._pending: set[str] = set()
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._sorted_repos: list[str] | None = None

    # -- queries -------------------------------------------------------------

    def has_repository(self, name: str) -> bool:
        return name in self._repos or name in self._pending

    def repositories(self, last: str | None = None, n: int | None = None) -> list[str]:
        """Repository names in lexical order, after `last`, at most `n` of them."""
        if self._sorted_repos is None:
            self._sorted_repos = sorted(self._repos.keys() | self._pending)
        return _page(self._sorted_repos, last, n)

    def tags(self, name: str, last: str | None = None, n: int | None = None) -> list[str]:
        """Tags of `name` in lexical order, after `last`, at most `n` of them."""
        repo = self._get(name)
        return _page(repo.sorted_tags(), last, n) if repo else []

    def resolve_tag(self, name: str, tag: str) -> str | None:
        """The digest `tag` points at in `name`, or None."""
        repo = self._get(name)
        return repo.tags.get(tag) if repo else None

    def has_manifest(self, name: str, digest: str) -> bool:
        repo = self._get(name)
        return repo is not None and digest in repo.manifests

    def has_layer(self, name: str, digest: str) -> bool:
        repo = self._get(name)
        return repo is not None and digest in repo.layers

    def manifests(self, name: str) -> list[str]:
        """Digests of every manifest revision of `name`."""
        repo = self._get(name)
        return list(repo.manifests) if repo else []

    def tags_of(self, name: str, digest: str) -> list[str]:
        """Tags of `name` that point at `digest`."""
        repo = self._get(name)
        return [t for t, d in repo.tags.items() if d == digest] if repo else []

    def counts(self) -> tuple[int, int, int]:
        """(repositories, tags, manifests) held, for logs; pending repositories add no tags."""
        tags = sum(len(r.tags) for r in self._repos.values())
        manifests = sum(len(r.manifests) for r in self._repos.values())
        return len(self._repos) + len(self._pending), tags, manifests

    def _get(self, name: str) -> RepositoryIndex | None:
        repo = self._repos.get(name)
        if repo is None and name in self._pending:
            raise RuntimeError(f"repository {name!r} used before it was loaded")
        return repo

    # -- mutators ------------------------------------------------------------

    def add_layer(self, name: str, digest: str) -> None:
        self._repo(name).layers.add(digest)

    def remove_layer(self, name: str, digest: str) -> None:
        repo = self._get(name)
        if repo:
            repo.layers.discard(digest)
            self._drop_if_empty(name, repo)

    def add_manifest(self, name: str, digest: str) -> None:
        self._repo(name).manifests.add(digest)

    def remove_manifest(self, name: str, digest: str) -> list[str]:
        """Forget manifest `digest` and every tag pointing at it; return those tags."""
        repo = self._get(name)
        if repo is None:
            return []
        repo.manifests.discard(digest)
        dropped = [t for t, d in repo.tags.items() if d == digest]
        for tag in dropped:
            del repo.tags[tag]
        if dropped:
            repo._sorted_tags = None
        self._drop_if_empty(name, repo)
        return dropped

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        repo = self._repo(name)
        if tag not in repo.tags:
            repo._sorted_tags = None
        repo.tags[tag] = digest

    def remove_tag(self, name: str, tag: str) -> None:
        repo = self._get(name)
        if repo and repo.tags.pop(tag, None) is not None:
            repo._sorted_tags = None
            self._drop_if_empty(name, repo)

    def _repo(self, name: str) -> RepositoryIndex:
        repo = self._get(name)
        if repo is None:
            repo = self._repos[name] = RepositoryIndex()
            self._sorted_repos = None
        return repo

    def _drop_if_empty(self, name: str, repo: RepositoryIndex) -> None:
        if repo.is_empty():
            del self._repos[name]
            self._sorted_repos = None

    # -- loading from storage --------------------------------------------------

    @classmethod
    async def discover(cls, driver: StorageDriver) -> TagIndex:
        """An index of the repositories `driver` holds under Distribution's layout, all pending.

        Repositories are the directories holding `_manifests` or `_layers`,
        found by listing `repositories/` down level by level, concurrently.
        """
        started = time.monotonic()
        index = cls(driver)
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
                    index._pending.add(directory[base:])
                elif not leaf.startswith("_"):
                    nested.append(child)
            await asyncio.gather(*(visit(child) for child in nested))

        await visit(layout.REPOSITORIES)
        log.info(
            "found %d repositories in storage in %.2fs; loading them in the background",
            len(index._pending),
            time.monotonic() - started,
        )
        return index

    async def load(self, name: str) -> None:
        """Make sure what storage holds of pending repository `name` is in the index.

        Returns at once for a loaded (or unknown) repository. Concurrent calls
        share one walk; one cancelled caller does not stop it for the others.
        A storage error leaves the repository pending, to be tried again.
        """
        if name not in self._pending:
            return
        task = self._loading.get(name)
        if task is None:
            task = self._loading[name] = asyncio.create_task(self._load(name))
            task.add_done_callback(functools.partial(self._loaded, name))
        await asyncio.shield(task)

    async def warm(self) -> None:
        """Load every pending repository; one that fails stays pending, with a warning."""
        started = time.monotonic()
        assert self._driver is not None, "only a discovered index warms up"
        limit = asyncio.Semaphore(self._driver.bulk_concurrency)

        async def warm_one(name: str) -> None:
            async with limit:
                try:
                    await self.load(name)
                except StorageError as e:
                    log.warning("repository %s not loaded, will retry on use: %s", name, e)

        await asyncio.gather(*(warm_one(name) for name in sorted(self._pending)))
        repos, tags, manifests = self.counts()
        log.info(
            "index loaded from storage: %d repositories, %d tags, %d manifests in %.2fs",
            repos,
            tags,
            manifests,
            time.monotonic() - started,
        )

    def _loaded(self, name: str, task: asyncio.Task[None]) -> None:
        del self._loading[name]
        if not task.cancelled():
            # Retrieved here so that an error nobody awaited any more is not
            # reported as lost; awaiting callers got it already.
            task.exception()

    async def _load(self, name: str) -> None:
        assert self._driver is not None, "only a discovered index loads repositories"
        driver = self._driver
        repo = RepositoryIndex()
        # tag -> digests of its index/ history, for every tag with a current link
        history: dict[str, list[str]] = {}
        current: set[str] = set()
        for section in ("_manifests", "_layers"):
            try:
                async for info in driver.walk(f"{layout.REPOSITORIES}/{name}/{section}"):
                    entry = layout.parse_repository_path(info.path)
                    if entry is None or entry.kind == "upload" or entry.name != name:
                        continue
                    if entry.kind == "tag":
                        current.add(entry.tag)
                        continue
                    digest = _digest_text(entry.algorithm, entry.hex, info.path)
                    if digest is None:
                        continue
                    if entry.kind == "layer":
                        repo.layers.add(digest)
                    elif entry.kind == "revision":
                        repo.manifests.add(digest)
                    elif entry.kind == "tag-history":
                        history.setdefault(entry.tag, []).append(digest)
            except PathNotFound:
                continue
        await _resolve_tags(driver, name, repo, {tag: history.get(tag, []) for tag in current})
        self._pending.discard(name)
        if repo.is_empty():
            self._sorted_repos = None
        else:
            self._repos[name] = repo


async def _resolve_tags(
    driver: StorageDriver, name: str, repo: RepositoryIndex, history: dict[str, list[str]]
) -> None:
    """Set each tag of `history` in `repo`, reading `current/link` where history is ambiguous."""
    ambiguous: list[str] = []
    for tag, digests in history.items():
        if len(digests) == 1:
            repo.tags[tag] = digests[0]
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

    await asyncio.gather(*(read_current(tag) for tag in ambiguous))


def _digest_text(algorithm: str, hexpart: str, path: str) -> str | None:
    try:
        return str(Digest.parse(f"{algorithm}:{hexpart}"))
    except (DigestInvalid, Unsupported):
        log.warning("skipping %s: not a valid digest path", path)
        return None


def _page(items: list[str], last: str | None, n: int | None) -> list[str]:
    start = bisect.bisect_right(items, last) if last else 0
    return items[start : start + n] if n is not None else items[start:]
