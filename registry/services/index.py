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

Other processes write to the same storage, so what the index lacks is not
known to be absent: it is a cache whose miss means "ask storage". The
`find_*` look-ups read storage on a miss (and remember what they find); the
synchronous queries answer from memory only. A miss by digest always asks
storage, so a digest pushed through any process is readable through every
other at once; a missing tag or repository is remembered as absent for
`negative_ttl` seconds at most. `refresh_*` re-read one entry from storage
whichever way it went (the change feed calls them), and `reconcile` compares
every repository with storage.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from cachetools import TTLCache

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import DigestInvalid, PathNotFound, StorageError, Unsupported
from registry.services.listing import (
    RepositoryIndex,
    RepositoryScan,
    discover_names,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class TagIndex:
    """Repositories, tags, manifests and blob links, all in memory.

    A repository found in storage but not yet loaded is *pending*: it is
    listed by `repositories()`, but anything else about it needs `await
    load(name)` first (asking before is a programming error and raises
    `RuntimeError`). Synchronous queries answer from memory and never fail
    on a missing repository: a miss there means "not known here". Mutators
    are called only after the corresponding storage write succeeded; one on
    a pending repository (another request may be loading it) is applied once
    the load is installed. An index made without a driver has no storage to
    ask: it is only what it was told.
    """

    def __init__(
        self,
        driver: StorageDriver | None = None,
        negative_ttl: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._driver = driver
        self._clock = clock
        self._repos: dict[str, RepositoryIndex] = {}
        self._pending: set[str] = set()
        # Pending repositories this index had not heard of until asked.
        self._probing: set[str] = set()
        # Changes to pending repositories, applied once they are loaded.
        self._deferred: dict[str, list[Callable[[], object]]] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._sorted_repos: list[str] | None = None
        # Readers of storage in flight, by what they read: ("repo", name), or
        # (kind, name, key). A change made meanwhile marks them, so that what
        # they read (older, maybe) does not overwrite it.
        self._watches: dict[tuple[str, ...], list[_Watch]] = {}
        # Refreshes of one entry run one after another: a later one must not
        # be overtaken by an earlier one that read an older value.
        self._refreshing: dict[tuple[str, ...], asyncio.Lock] = {}
        # True while a refresh applies what it read (a change from storage,
        # not a newer local write, as far as refreshes of one entry go).
        self._from_storage = False
        # One set per reconciliation under way: the repositories changed meanwhile.
        self._reconciling: list[set[str]] = []
        # Tags and repositories storage said were absent, briefly.
        self._absent: TTLCache[tuple[str, ...], bool] = TTLCache(
            maxsize=100_000, ttl=negative_ttl, timer=time.monotonic
        )

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

    def pushed_at(self, name: str, tag: str) -> float | None:
        """When `tag` was last pointed at its digest (seconds since the epoch), or None."""
        repo = self._get(name)
        return repo.pushed.get(tag) if repo else None

    def last_push(self, name: str) -> float | None:
        """When any tag of `name` was last pushed, or None if it has no tags."""
        repo = self._get(name)
        return max(repo.pushed.values(), default=None) if repo else None

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
        if self._defer(name, functools.partial(self.add_layer, name, digest)):
            return
        self._touch(name, ("layer", name, digest))
        self._repo(name).layers.add(digest)

    def remove_layer(self, name: str, digest: str) -> None:
        if self._defer(name, functools.partial(self.remove_layer, name, digest)):
            return
        self._touch(name, ("layer", name, digest))
        repo = self._get(name)
        if repo:
            repo.layers.discard(digest)
            self._drop_if_empty(name, repo)

    def add_manifest(self, name: str, digest: str) -> None:
        if self._defer(name, functools.partial(self.add_manifest, name, digest)):
            return
        self._touch(name, ("manifest", name, digest))
        self._repo(name).manifests.add(digest)

    def remove_manifest(self, name: str, digest: str) -> None:
        """Forget manifest `digest` and every tag pointing at it."""
        if self._defer(name, functools.partial(self.remove_manifest, name, digest)):
            return
        self._touch(name, ("manifest", name, digest))
        repo = self._get(name)
        if repo is None:
            return
        repo.manifests.discard(digest)
        dropped = [t for t, d in repo.tags.items() if d == digest]
        for tag in dropped:
            self._touch(name, ("tag", name, tag))
            del repo.tags[tag]
            repo.pushed.pop(tag, None)
        if dropped:
            repo._sorted_tags = None
        self._drop_if_empty(name, repo)

    def set_tag(self, name: str, tag: str, digest: str, pushed: float | None = None) -> None:
        """Point `tag` at `digest`; `pushed` is when (now if not given)."""
        if self._defer(name, functools.partial(self.set_tag, name, tag, digest, pushed)):
            return
        self._touch(name, ("tag", name, tag))
        repo = self._repo(name)
        self._absent.pop(("tag", name, tag), None)
        if tag not in repo.tags:
            repo._sorted_tags = None
        repo.tags[tag] = digest
        repo.pushed[tag] = self._clock() if pushed is None else pushed

    def remove_tag(self, name: str, tag: str) -> None:
        if self._defer(name, functools.partial(self.remove_tag, name, tag)):
            return
        self._touch(name, ("tag", name, tag))
        repo = self._get(name)
        if repo and repo.tags.pop(tag, None) is not None:
            repo.pushed.pop(tag, None)
            repo._sorted_tags = None
            self._drop_if_empty(name, repo)

    def _repo(self, name: str) -> RepositoryIndex:
        repo = self._get(name)
        if repo is None:
            repo = self._repos[name] = RepositoryIndex()
            self._absent.pop(("repo", name), None)
            self._sorted_repos = None
        return repo

    def _defer(self, name: str, mutation: Callable[[], object]) -> bool:
        """Hold `mutation` until the load of pending repository `name` is installed.

        A load under way may have read storage before the write this mutation
        records; applied after it, the write is not lost. If the load fails the
        mutation is dropped: the next load reads the write from storage.
        """
        if name not in self._pending:
            return False
        self._deferred.setdefault(name, []).append(mutation)
        return True

    def _touch(self, name: str, entry: tuple[str, ...]) -> None:
        """Mark the storage readers that what they read may be older than this change."""
        for watch in self._watches.get(("repo", name), ()):
            watch.changed = True
        for touched in self._reconciling:
            touched.add(name)
        if not self._from_storage:
            for watch in self._watches.get(entry, ()):
                watch.changed = True

    @contextlib.contextmanager
    def _watch(self, what: tuple[str, ...]) -> Iterator[_Watch]:
        watch = _Watch()
        self._watches.setdefault(what, []).append(watch)
        try:
            yield watch
        finally:
            watches = self._watches[what]
            watches.remove(watch)
            if not watches:
                del self._watches[what]

    @contextlib.contextmanager
    def _applying(self) -> Iterator[None]:
        self._from_storage = True
        try:
            yield
        finally:
            self._from_storage = False

    def _drop_if_empty(self, name: str, repo: RepositoryIndex) -> None:
        if repo.is_empty():
            del self._repos[name]
            self._sorted_repos = None

    # -- loading from storage --------------------------------------------------

    @classmethod
    async def discover(cls, driver: StorageDriver, negative_ttl: float = 1.0) -> TagIndex:
        """An index of the repositories `driver` holds under Distribution's layout, all pending."""
        started = time.monotonic()
        index = cls(driver, negative_ttl)
        index._pending = await discover_names(driver)
        log.info(
            "found %d repositories in storage in %.2fs; loading them in the background",
            len(index._pending),
            time.monotonic() - started,
        )
        return index

    async def load(self, name: str) -> None:
        """Make sure what storage holds of repository `name` is in the index.

        Returns at once for a loaded repository. A pending one, or one this
        index has not heard of (another process may have created it), is
        read from storage; an unknown one that storage lacks too is
        remembered as absent for `negative_ttl` seconds. Concurrent calls
        share one walk; one cancelled caller does not stop it for the others.
        A storage error leaves the repository as it was, to be tried again.
        """
        if name in self._repos or self._driver is None:
            return
        if name not in self._pending:
            if ("repo", name) in self._absent:
                return
            self._pending.add(name)
            self._probing.add(name)
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
        try:
            repo = await self.read_repository(name)
        except BaseException:
            self._deferred.pop(name, None)
            if name in self._probing:
                # Unknown before this load: leave it unknown, not pending.
                self._pending.discard(name)
            raise
        finally:
            self._probing.discard(name)
        self._pending.discard(name)
        self._install(name, repo)

    def _install(self, name: str, repo: RepositoryIndex) -> None:
        self._sorted_repos = None
        if repo.is_empty():
            self._repos.pop(name, None)
            self._absent[("repo", name)] = True
        else:
            self._repos[name] = repo
        for mutation in self._deferred.pop(name, ()):
            mutation()

    async def read_repository(self, name: str) -> RepositoryIndex:
        """What storage holds of repository `name` now, read afresh (empty if nothing).

        Raises `StorageError` if storage cannot be read.
        """
        assert self._driver is not None, "only an index with a driver reads storage"
        scan = RepositoryScan()
        for section in ("_manifests", "_layers"):
            try:
                async for info in self._driver.walk(f"{layout.REPOSITORIES}/{name}/{section}"):
                    entry = layout.parse_repository_path(info.path)
                    if entry is not None and entry.name == name:
                        scan.add(entry, info)
            except PathNotFound:
                continue
        return await scan.resolve(self._driver, name)

    # -- read-through and refresh ------------------------------------------------

    async def find_tag(self, name: str, tag: str) -> str | None:
        """The digest `tag` points at in `name`, asking storage on a miss; None if absent.

        Raises `StorageError` if storage cannot be asked.
        """
        await self.load(name)
        digest = self.resolve_tag(name, tag)
        if digest is not None or self._driver is None or ("tag", name, tag) in self._absent:
            return digest
        return await self.refresh_tag(name, tag)

    async def find_manifest(self, name: str, digest: str) -> bool:
        """Whether `name` holds manifest revision `digest`, asking storage on a miss."""
        await self.load(name)
        known = self.has_manifest(name, digest)
        if known or self._driver is None:
            return known
        return await self.refresh_manifest(name, digest)

    async def find_layer(self, name: str, digest: str) -> bool:
        """Whether blob `digest` is linked into `name`, asking storage on a miss."""
        await self.load(name)
        known = self.has_layer(name, digest)
        if known or self._driver is None:
            return known
        return await self.refresh_layer(name, digest)

    async def refresh_tag(self, name: str, tag: str) -> str | None:
        """Re-read `tag` of `name` from storage into the index; return its digest or None."""
        assert self._driver is not None, "only an index with a driver reads storage"
        driver = self._driver
        path = layout.tag_current_link(name, tag)

        async def read() -> tuple[str, float] | None:
            try:
                info = await driver.stat(path)
                text = (await driver.get_content(path)).decode()
                return str(Digest.parse(text.strip())), info.modified
            except (PathNotFound, UnicodeDecodeError, DigestInvalid, Unsupported):
                return None

        key = ("tag", name, tag)
        found, changed = await self._refresh(name, key, read)
        if not changed:
            with self._applying():
                if found is None:
                    self.remove_tag(name, tag)
                    self._absent[key] = True
                else:
                    self.set_tag(name, tag, found[0], pushed=found[1])
        return found[0] if found is not None else None

    async def refresh_manifest(self, name: str, digest: str) -> bool:
        """Re-read whether manifest revision `digest` is in `name`; update the index so."""
        path = layout.manifest_revision_link(name, Digest.parse(digest))
        present, changed = await self._refresh(name, ("manifest", name, digest), self._exists(path))
        if not changed:
            with self._applying():
                (self.add_manifest if present else self.remove_manifest)(name, digest)
        return present

    async def refresh_layer(self, name: str, digest: str) -> bool:
        """Re-read whether blob `digest` is linked into `name`; update the index so."""
        path = layout.layer_link(name, Digest.parse(digest))
        present, changed = await self._refresh(name, ("layer", name, digest), self._exists(path))
        if not changed:
            with self._applying():
                (self.add_layer if present else self.remove_layer)(name, digest)
        return present

    async def refresh_repository(self, name: str) -> None:
        """Re-read all of `name` from storage, unless it changed here while being read."""
        await self.load(name)
        with self._watch(("repo", name)) as watch:
            fresh = await self.read_repository(name)
        if not watch.changed:
            self._install(name, fresh)

    async def reconcile(self) -> int:
        """Compare every repository with storage and take what storage says.

        Picks up writes that never reached the change feed (Distribution
        sharing the storage, files removed by hand). The whole tree is read
        as one listing (on S3, one request per 1,000 keys), and a tag's
        current link is read again only if it was rewritten since it was last
        read. A repository changed here while storage was being read keeps
        the newer state. Returns how many repositories changed. Raises
        `StorageError` if storage cannot be read; nothing is changed then.
        """
        assert self._driver is not None, "only an index with a driver reads storage"
        driver = self._driver
        touched: set[str] = set()
        self._reconciling.append(touched)
        try:
            scans: dict[str, RepositoryScan] = {}
            async for info in driver.walk(layout.REPOSITORIES):
                entry = layout.parse_repository_path(info.path)
                if entry is not None:
                    scans.setdefault(entry.name, RepositoryScan()).add(entry, info)
            limit = asyncio.Semaphore(driver.bulk_concurrency)

            async def resolve(name: str, scan: RepositoryScan) -> tuple[str, RepositoryIndex]:
                async with limit:
                    return name, await scan.resolve(driver, name, self._repos.get(name))

            fresh = dict(await asyncio.gather(*(resolve(n, sc) for n, sc in scans.items())))
        finally:
            self._reconciling.remove(touched)
        changed = 0
        for name in sorted(fresh.keys() | self._repos.keys() | self._pending):
            if name in touched or name in self._loading:
                continue
            repo = fresh.get(name, RepositoryIndex())
            old = self._repos.get(name)
            same = old is not None and (old.tags, old.manifests, old.layers) == (
                repo.tags,
                repo.manifests,
                repo.layers,
            )
            if name in self._pending or not same:
                if not same and (old is not None or not repo.is_empty()):
                    changed += 1
                self._pending.discard(name)
                self._install(name, repo)
        return changed

    async def _refresh(
        self, name: str, key: tuple[str, ...], read: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """Run `read` (a storage read of entry `key` of `name`) after any earlier refresh
        of the same entry; return what it read and whether a local write changed the
        entry meanwhile (then the index keeps that newer write)."""
        await self.load(name)
        lock = self._refreshing.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                with self._watch(key) as watch:
                    result = await read()
                return result, watch.changed
        finally:
            if not lock.locked() and self._refreshing.get(key) is lock:
                del self._refreshing[key]

    def _exists(self, path: str) -> Callable[[], Awaitable[bool]]:
        assert self._driver is not None, "only an index with a driver reads storage"
        driver = self._driver

        async def stat() -> bool:
            try:
                await driver.stat_file(path)
            except PathNotFound:
                return False
            return True

        return stat


@dataclass(slots=True)
class _Watch:
    """A storage read in flight; `changed` is set by a change made meanwhile."""

    changed: bool = False


def _page(items: list[str], last: str | None, n: int | None) -> list[str]:
    start = bisect.bisect_right(items, last) if last else 0
    return items[start : start + n] if n is not None else items[start:]
