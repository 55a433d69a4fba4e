"""The in-memory index of repositories, tags, manifests and blob links.

Tag and manifest look-ups (the hot path of a `docker pull` storm) are answered
from here and never walk storage. The index is a cache of what storage says:
every write reaches storage first and the index after, so a crash between the
two loses nothing that was acknowledged, and `rebuild` at start-up restores it.

Rebuild lists `repositories/` once. A tag's digest is read from its
`current/link` only when its `index/` history holds more than one digest;
otherwise the single history entry (known from the listing alone) is it, which
saves one storage read per tag on a large bucket.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.digest import Digest
from registry.errors import DigestInvalid, PathNotFound, Unsupported
from registry.storage import layout
from registry.storage.driver import StorageDriver

log = logging.getLogger(__name__)

_REBUILD_CONCURRENCY = 64


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

    Methods are synchronous and never fail on a missing repository: callers
    decide whether absence is an error. Mutators are called only after the
    corresponding storage write succeeded.
    """

    def __init__(self) -> None:
        self._repos: dict[str, RepositoryIndex] = {}
        self._sorted_repos: list[str] | None = None

    # -- queries -------------------------------------------------------------

    def has_repository(self, name: str) -> bool:
        return name in self._repos

    def repositories(self, last: str | None = None, n: int | None = None) -> list[str]:
        """Repository names in lexical order, after `last`, at most `n` of them."""
        if self._sorted_repos is None:
            self._sorted_repos = sorted(self._repos)
        return _page(self._sorted_repos, last, n)

    def tags(self, name: str, last: str | None = None, n: int | None = None) -> list[str]:
        """Tags of `name` in lexical order, after `last`, at most `n` of them."""
        repo = self._repos.get(name)
        return _page(repo.sorted_tags(), last, n) if repo else []

    def resolve_tag(self, name: str, tag: str) -> str | None:
        """The digest `tag` points at in `name`, or None."""
        repo = self._repos.get(name)
        return repo.tags.get(tag) if repo else None

    def has_manifest(self, name: str, digest: str) -> bool:
        repo = self._repos.get(name)
        return repo is not None and digest in repo.manifests

    def has_layer(self, name: str, digest: str) -> bool:
        repo = self._repos.get(name)
        return repo is not None and digest in repo.layers

    def manifests(self, name: str) -> list[str]:
        """Digests of every manifest revision of `name`."""
        repo = self._repos.get(name)
        return list(repo.manifests) if repo else []

    def tags_of(self, name: str, digest: str) -> list[str]:
        """Tags of `name` that point at `digest`."""
        repo = self._repos.get(name)
        return [t for t, d in repo.tags.items() if d == digest] if repo else []

    def counts(self) -> tuple[int, int, int]:
        """(repositories, tags, manifests) held, for logs and metrics."""
        tags = sum(len(r.tags) for r in self._repos.values())
        manifests = sum(len(r.manifests) for r in self._repos.values())
        return len(self._repos), tags, manifests

    # -- mutators ------------------------------------------------------------

    def add_layer(self, name: str, digest: str) -> None:
        self._repo(name).layers.add(digest)

    def remove_layer(self, name: str, digest: str) -> None:
        repo = self._repos.get(name)
        if repo:
            repo.layers.discard(digest)
            self._drop_if_empty(name, repo)

    def add_manifest(self, name: str, digest: str) -> None:
        self._repo(name).manifests.add(digest)

    def remove_manifest(self, name: str, digest: str) -> list[str]:
        """Forget manifest `digest` and every tag pointing at it; return those tags."""
        repo = self._repos.get(name)
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
        repo = self._repos.get(name)
        if repo and repo.tags.pop(tag, None) is not None:
            repo._sorted_tags = None
            self._drop_if_empty(name, repo)

    def _repo(self, name: str) -> RepositoryIndex:
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = RepositoryIndex()
            self._sorted_repos = None
        return repo

    def _drop_if_empty(self, name: str, repo: RepositoryIndex) -> None:
        if repo.is_empty():
            del self._repos[name]
            self._sorted_repos = None

    # -- rebuild -------------------------------------------------------------

    @classmethod
    async def rebuild(cls, driver: StorageDriver) -> TagIndex:
        """Build the index from what `driver` holds under Distribution's layout.

        Entries that do not parse (foreign files, bad digests) are skipped with
        a warning rather than stopping the start-up.
        """
        started = time.monotonic()
        index = cls()
        # (repository, tag) -> digests found in the tag's index/ history, for
        # every tag that has a current link
        history: dict[tuple[str, str], list[str]] = {}
        current: set[tuple[str, str]] = set()

        def record(path: str) -> None:
            entry = layout.parse_repository_path(path)
            if entry is None or entry.kind == "upload":
                return
            if entry.kind == "tag":
                current.add((entry.name, entry.tag))
                return
            digest = _digest_text(entry.algorithm, entry.hex, path)
            if digest is None:
                return
            if entry.kind == "layer":
                index.add_layer(entry.name, digest)
            elif entry.kind == "revision":
                index.add_manifest(entry.name, digest)
            elif entry.kind == "tag-history":
                history.setdefault((entry.name, entry.tag), []).append(digest)

        await _walk_repositories(driver, record)
        await index._resolve_tags(driver, {key: history.get(key, []) for key in current})
        repos, tags, manifests = index.counts()
        log.info(
            "index rebuilt from storage: %d repositories, %d tags, %d manifests in %.2fs",
            repos,
            tags,
            manifests,
            time.monotonic() - started,
        )
        return index

    async def _resolve_tags(
        self, driver: StorageDriver, history: dict[tuple[str, str], list[str]]
    ) -> None:
        ambiguous: list[tuple[str, str]] = []
        for (name, tag), digests in history.items():
            if len(digests) == 1:
                self.set_tag(name, tag, digests[0])
            else:
                ambiguous.append((name, tag))
        limit = asyncio.Semaphore(_REBUILD_CONCURRENCY)

        async def read_current(name: str, tag: str) -> None:
            async with limit:
                try:
                    text = (await driver.get_content(layout.tag_current_link(name, tag))).decode()
                    digest = str(Digest.parse(text.strip()))
                except (PathNotFound, UnicodeDecodeError, DigestInvalid, Unsupported):
                    log.warning("skipping tag %s:%s: unreadable current link", name, tag)
                    return
                self.set_tag(name, tag, digest)

        await asyncio.gather(*(read_current(n, t) for n, t in ambiguous))


async def _walk_repositories(driver: StorageDriver, record: Callable[[str], None]) -> None:
    """Call `record` with the path of every manifest and layer link of every repository.

    Repositories are found by listing directories down to the ones holding
    `_manifests`/`_layers`, and each is walked on its own, concurrently: on S3
    one flat listing of a large bucket is a long chain of sequential requests,
    while many short listings run side by side. Upload directories are never
    walked.
    """
    limit = asyncio.Semaphore(_REBUILD_CONCURRENCY)

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
                async with limit:
                    async for info in driver.walk(child):
                        record(info.path)
            elif not leaf.startswith("_"):
                nested.append(child)
        await asyncio.gather(*(visit(child) for child in nested))

    await visit(layout.REPOSITORIES)


def _digest_text(algorithm: str, hexpart: str, path: str) -> str | None:
    try:
        return str(Digest.parse(f"{algorithm}:{hexpart}"))
    except (DigestInvalid, Unsupported):
        log.warning("skipping %s: not a valid digest path", path)
        return None


def _page(items: list[str], last: str | None, n: int | None) -> list[str]:
    start = bisect.bisect_right(items, last) if last else 0
    return items[start : start + n] if n is not None else items[start:]
