"""One garbage collection, online: while every process goes on serving pushes and pulls.

The order of a run, each step on what storage holds at that moment:

1. Walk `repositories/` and `blobs/` (`inventory`).
2. Retention: delete the tags no rule keeps (`retention`).
3. Untagged manifests (`--delete-untagged`, or a rule's `untagged_days`):
   delete revisions no tag reaches (nor a pull by digest a rule keeps),
   through index children and referrers of reached subjects, once older than
   the grace period.
4. Mark: every remaining manifest revision keeps itself and everything it
   names (`references`).
5. Sweep: delete blobs nothing marks whose data is older than the grace
   period and that no repository linked within it; their layer links; layer
   links whose blob is gone; orphaned staging files; expired upload sessions.

Why a push in flight loses nothing: what it uploads or links is younger than
the grace period; a manifest it pushes after the mark is found before the next
batch of deletions, by reading the change feed (every `_FOLLOW_SECONDS`), or
by walking storage again where the feed cannot tell (no feed, a gap in it,
and every `_BACKSTOP_SECONDS` for records lost in a crash); and a manifest
PUT checks in storage that the blobs it names exist, so one naming a blob
deleted a moment ago is refused with MANIFEST_BLOB_UNKNOWN and the client
uploads it again. What is left is a window of about one batch in which a PUT
checks a blob that is then deleted before the manifest is written and read
back; the grace period covers it unless the blob was uploaded longer ago
than that and nothing referenced it since. Every deletion is published on
the change feed, so every process stops serving it.

A run holds the collection lease throughout and stops deleting the moment it
is lost (`LeaseLost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry import layout
from registry.config import RetentionRule
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import DigestInvalid, PathNotFound, Unsupported
from registry.gc import retention
from registry.gc.counting import CountingDriver
from registry.gc.inventory import (
    Inventory,
    Progress,
    RepositoryState,
    resolve_tags,
    scan_blobs,
    scan_repositories,
)
from registry.gc.lease import Lease
from registry.gc.pulls import load_pulls
from registry.gc.references import References, references
from registry.gc.report import GcReport
from registry.services.feed import Change

log = logging.getLogger(__name__)

# Without the change feed, storage is walked again before each batch of
# deletions, at most this often (or as often as a walk takes, if longer).
_REWALK_SECONDS = 1.0
# With it, the feed is read before each batch of at most this long, and
# storage walked again as a backstop for records lost in a crash this often
# (or ten times as long as a walk takes).
_FOLLOW_SECONDS = 0.2
_BACKSTOP_SECONDS = 60.0
# The sweep deletes blobs and their layer links a driver call (`delete_files`)
# at a time, each sized to take about this long: long enough that what a call
# costs whatever its size does not count, short enough that the lease is
# checked, and the feed read, about as often as when blobs went one by one.
_STEP_SECONDS = 0.05
_FIRST_STEP = 64
#: Storage requests a collection keeps in flight at most (walks, reads, deletes),
#: whatever the driver allows bulk work: a collection is background work, and
#: registries go on serving from the same storage meanwhile. 32 listings at once
#: (S3's 64 connections) halved the pushes and pulls SeaweedFS served while the walk
#: ran; with 4 they kept 0.75-0.99 of their rate, 0.89 on the median of five runs
#: (`bench.gc --backend s3`, bench/README.md).
BULK_CONCURRENCY = 4

#: Reads the change feed: what other processes changed since the last call,
#: or None if that cannot be known (then storage is walked again).
Follow = Callable[[], Awaitable[list[Change] | None]]


class LeaseLost(Exception):
    """The collection lease went to another collector mid-run; this run stopped deleting."""


@dataclass(frozen=True, slots=True)
class GcOptions:
    """What a collection does: see `cargobay gc --help` and `[gc]` in the configuration."""

    grace: float = 3600.0
    dry_run: bool = False
    delete_untagged: bool = False
    upload_expiry: float = 7 * 86400.0
    retention: tuple[RetentionRule, ...] = ()


async def collect(
    driver: StorageDriver,
    options: GcOptions,
    publish: Callable[[Change], None],
    *,
    follow: Follow | None = None,
    lease: Lease | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> GcReport:
    """Collect garbage in `driver`'s storage (opened by the caller) under the lease.

    Raises `LeaseHeld` if another collection runs, `LeaseLost` if the lease
    is lost midway (what was deleted until then stays deleted), and
    `StorageError` on a storage fault, which also ends the run. Every
    deletion is published as a `Change` as it happens; the caller flushes
    the feed. With `follow`, the feed tells what was pushed during the
    sweep (it must start following before this call); without, storage is
    walked again before each batch of deletions, which costs more. The run's own
    walks, reads and deletes keep at most `BULK_CONCURRENCY` storage requests
    in flight, however wide the driver's `bulk_concurrency`; the lease's
    renewals and `follow` are the caller's.
    """
    counting = CountingDriver(driver.with_bulk_concurrency(BULK_CONCURRENCY))
    held = lease if lease is not None else Lease(counting, clock=clock)
    started = time.monotonic()
    async with held.held():
        run = _Run(counting, options, publish, follow, held, progress, clock)
        await run.run()
    run.report.seconds = time.monotonic() - started
    run.report.requests = dict(counting.counts)
    return run.report


class _Run:
    def __init__(
        self,
        driver: StorageDriver,
        options: GcOptions,
        publish: Callable[[Change], None],
        follow: Follow | None,
        lease: Lease,
        progress: Progress | None,
        clock: Callable[[], float],
    ) -> None:
        self.driver = driver
        self.options = options
        self.publish = publish
        self.follow = follow
        # Changes are handed to the feed a batch of deletions at a time: one
        # record per batch, not one per few deletions, keeps the feed short
        # for every process that reads it.
        self.unpublished: list[Change] = []
        self.lease = lease
        self.progress = progress
        self.clock = clock
        self.report = GcReport(dry_run=options.dry_run)
        self.inventory = Inventory()
        self.refs: dict[str, References] = {}
        self.marked: set[str] = set()
        # Digests some repository linked within the grace period.
        self.fresh_links: set[str] = set()
        self.limit = asyncio.Semaphore(driver.bulk_concurrency)
        # Recorded pull times, read by retention when a rule asks for them.
        self.pulls: retention.Pulls = {}

    async def run(self) -> None:
        try:
            await self._steps()
        finally:
            self._publish()  # what was deleted before a failure too

    async def _steps(self) -> None:
        inventory = self.inventory
        await scan_repositories(self.driver, inventory, self.progress)
        await scan_blobs(self.driver, inventory, self.progress)
        self._tally_examined()
        needs_tags = self.options.delete_untagged or bool(self.options.retention)
        if needs_tags:
            await resolve_tags(self.driver, inventory.repositories)
        await self._read_references(inventory.repositories)
        if self.options.retention:
            await self._apply_retention()
        if needs_tags:
            for name in sorted(inventory.repositories):
                await self._delete_untagged(name)
        self._mark(inventory.repositories)
        self._publish()
        await self._sweep_blobs()
        await self._sweep_dangling_links()
        await self._sweep_staged()
        await self._sweep_uploads()
        await self._sweep_incomplete_writes()

    # -- marking ---------------------------------------------------------------

    async def _read_references(self, repositories: dict[str, RepositoryState]) -> None:
        wanted = _roots(repositories) - self.refs.keys()

        async def read(digest: str) -> None:
            async with self.limit:
                try:
                    data = await self.driver.get_content(layout.blob_data(Digest.parse(digest)))
                except PathNotFound:
                    return  # a revision without content names nothing
            self.refs[digest] = references(data)
            if self.progress is not None and len(self.refs) % 1000 == 0:
                self.progress("mark", len(self.refs))

        await asyncio.gather(*(read(d) for d in wanted))

    def _mark(self, repositories: dict[str, RepositoryState]) -> None:
        for digest in _roots(repositories):
            self.marked.add(digest)
            found = self.refs.get(digest)
            if found is not None:
                self.marked |= found.content
        horizon = self.clock() - self.options.grace
        for repo in repositories.values():
            self.fresh_links.update(d for d, at in repo.layers.items() if at > horizon)

    async def _walk_again(self) -> float:
        """Mark what manifests pushed since the last look name, and blobs linked since.

        Returns how long the walk took.
        """
        started = time.monotonic()
        fresh = Inventory()
        await scan_repositories(self.driver, fresh)
        await self._read_references(fresh.repositories)
        self._mark(fresh.repositories)
        return time.monotonic() - started

    async def _apply(self, changes: list[Change]) -> None:
        """Mark what the manifests and layer links named in `changes` keep alive."""
        named: set[tuple[str, str]] = set()
        for change in changes:
            if change.kind == "manifest" and change.digest:
                named.add((change.repository, change.digest))
            elif change.kind == "layer" and change.digest:
                self.fresh_links.add(change.digest)
        revisions: dict[str, RepositoryState] = {}

        async def existing(name: str, digest: str) -> None:
            # A change may be a deletion: only a revision still there keeps anything.
            async with self.limit:
                with contextlib.suppress(PathNotFound, DigestInvalid, Unsupported):
                    path = layout.manifest_revision_link(name, Digest.parse(digest))
                    await self.driver.stat(path)
                    revisions.setdefault(name, RepositoryState()).revisions[digest] = 0.0

        await asyncio.gather(*(existing(name, digest) for name, digest in named))
        await self._read_references(revisions)
        self._mark(revisions)

    # -- retention and untagged manifests ---------------------------------------

    async def _apply_retention(self) -> None:
        rules = self.options.retention
        if retention.keeps_pulls(rules):
            self.pulls = await load_pulls(self.driver, self.clock(), fold=not self.options.dry_run)
        now = self.clock()
        for name, repo in sorted(self.inventory.repositories.items()):
            expired = retention.expired_tags(name, repo.tags, rules, self.pulls, now)
            for tag in sorted(expired):
                state = repo.tags[tag]
                if not self.options.dry_run:
                    try:
                        current = await self.driver.stat(layout.tag_current_link(name, tag))
                    except PathNotFound:
                        del repo.tags[tag]
                        continue
                    if current.modified > state.pushed:
                        continue  # pushed again since the walk: a new tag, kept
                await self._remove(layout.tag_dir(name, tag), "tags", Change("tag", name, tag=tag))
                del repo.tags[tag]

    def _reached(self, repo: RepositoryState, roots: set[str]) -> set[str]:
        """Manifests of `repo` a tag or one of `roots` reaches: through index children, and
        referrers of reached."""
        reached: set[str] = set()
        frontier = [t.digest for t in repo.tags.values() if t.digest] + list(roots)
        while frontier:
            while frontier:
                digest = frontier.pop()
                if digest in reached:
                    continue
                reached.add(digest)
                found = self.refs.get(digest)
                if found is not None:
                    frontier.extend(found.children)
            for digest in repo.revisions:
                found = self.refs.get(digest)
                if digest not in reached and found is not None and found.subject in reached:
                    frontier.append(digest)
        return reached

    def _untagged(self, name: str, repo: RepositoryState) -> list[str]:
        if self.options.delete_untagged:
            expiry: float | None = 0.0
        else:
            expiry = retention.untagged_expiry(name, self.options.retention)
        if expiry is None:
            return []
        now = self.clock()
        before = now - max(expiry, self.options.grace)
        pulled = retention.pulled_manifests(
            name, repo.revisions, self.options.retention, self.pulls, now
        )
        reached = self._reached(repo, pulled)
        return sorted(d for d, at in repo.revisions.items() if d not in reached and at < before)

    async def _delete_untagged(self, name: str) -> None:
        repo = self.inventory.repositories[name]
        if not self._untagged(name, repo):
            return
        if not self.options.dry_run:
            # Tags and manifests pushed since the walk may reach them now.
            fresh = Inventory()
            await scan_repositories(self.driver, fresh, root=layout.repository(name))
            repo = fresh.repositories.get(name, RepositoryState())
            await resolve_tags(self.driver, fresh.repositories)
            await self._read_references(fresh.repositories)
            self.inventory.repositories[name] = repo
        for digest in self._untagged(name, repo):
            await self._remove(
                layout.manifest_revision_dir(name, Digest.parse(digest)),
                "manifests",
                Change("manifest", name, digest=digest),
            )
            del repo.revisions[digest]

    # -- sweeping --------------------------------------------------------------

    def _unreferenced(self, horizon: float) -> list[str]:
        return sorted(
            digest
            for digest, info in self.inventory.blobs.items()
            if digest not in self.marked
            and digest not in self.fresh_links
            and info.modified < horizon
        )

    async def _sweep_blobs(self) -> None:
        horizon = self.clock() - self.options.grace
        candidates = self._unreferenced(horizon)
        if not candidates:
            return
        linked_from: dict[str, list[str]] = {}
        for name, repo in self.inventory.repositories.items():
            for digest in repo.layers:
                linked_from.setdefault(digest, []).append(name)
        position = 0
        size = _FIRST_STEP
        walked = time.monotonic()
        walk = 0.0
        if self.follow is None and not self.options.dry_run:
            # What was pushed while marking; with the feed, its first read says.
            walk = await self._walk_again()
        while position < len(candidates):
            pause = float("inf")
            if not self.options.dry_run:
                pause = await self._recheck(walked, walk)
                if pause < 0:
                    walked = time.monotonic()
                    walk = await self._walk_again()
                    pause = max(_REWALK_SECONDS, walk)
            batch_started = time.monotonic()
            while position < len(candidates) and time.monotonic() - batch_started < pause:
                step = [
                    d
                    for d in candidates[position : position + size]
                    if d not in self.marked and d not in self.fresh_links
                ]
                position += size
                step_started = time.monotonic()
                await self._delete_blobs(step, linked_from)
                size = _next_size(size, time.monotonic() - step_started)
            self._publish()
            if self.progress is not None:
                self.progress("sweep", position)

    async def _recheck(self, walked: float, walk: float) -> float:
        """Follow the feed before a batch: how long the batch may last, or -1 to walk first."""
        if self.follow is None:
            return -1.0
        changes = await self.follow()
        if changes is None or time.monotonic() - walked > max(_BACKSTOP_SECONDS, 10 * walk):
            return -1.0
        await self._apply(changes)
        return _FOLLOW_SECONDS

    async def _delete_blobs(self, digests: list[str], linked_from: dict[str, list[str]]) -> None:
        """Delete the blobs `digests` and their layer links in `linked_from`, in one call.

        By the files the walk found: a blob's directory holds its `data`, a
        layer link's its `link`, and deleting the file takes the emptied
        directory with it, with no listing.
        """
        doomed: list[_Doomed] = []
        for digest in digests:
            parsed = Digest.parse(digest)
            info = self.inventory.blobs.pop(digest)
            doomed.append(_Doomed(info.path, "blobs", Change("blob", digest=digest), info.size))
            for name in linked_from.get(digest, ()):
                self.inventory.repositories[name].layers.pop(digest, None)
                link = layout.layer_link(name, parsed)
                doomed.append(_Doomed(link, "layer_links", Change("layer", name, digest=digest)))
        await self._remove_files(doomed)

    def _publish(self) -> None:
        for change in self.unpublished:
            self.publish(change)
        self.unpublished.clear()

    async def _remove_link(self, name: str, digest: Digest) -> None:
        link = layout.layer_link(name, digest)
        change = Change("layer", name, digest=str(digest))
        await self._remove(link.rpartition("/")[0], "layer_links", change)
        self.inventory.repositories[name].layers.pop(str(digest), None)

    async def _sweep_dangling_links(self) -> None:
        horizon = self.clock() - self.options.grace
        for name, repo in sorted(self.inventory.repositories.items()):
            for digest, at in sorted(repo.layers.items()):
                if digest in self.inventory.blobs or at >= horizon:
                    continue
                parsed = Digest.parse(digest)
                with contextlib.suppress(PathNotFound):
                    await self.driver.stat(layout.blob_data(parsed))
                    continue  # uploaded since the walk
                await self._remove_link(name, parsed)

    async def _sweep_staged(self) -> None:
        horizon = self.clock() - self.options.grace
        for info in self.inventory.staged:
            if info.modified < horizon:
                await self._remove(info.path, "staged", None, info.size)

    async def _sweep_uploads(self) -> None:
        uploads = self.inventory.uploads
        for directory in await uploads.expired(
            self.driver, self.options.upload_expiry, self.clock()
        ):
            await self._remove(directory, "uploads", None)

    async def _sweep_incomplete_writes(self) -> None:
        now = self.clock()
        async for write in self.driver.incomplete_writes(layout.ROOT):
            self.report.examined["multipart"].add()
            # A session's own writes last as long as the session may.
            in_session = "/_uploads/" in write.path
            limit = self.options.upload_expiry if in_session else self.options.grace
            if now - write.started <= limit:
                continue
            if not self.options.dry_run:
                if not self.lease.valid:
                    raise LeaseLost("lost the collection lease; stopped")
                await self.driver.discard_incomplete_write(write)
            else:
                self.report.removed.append(f"{write.path} (unfinished write {write.handle})")
            self.report.freed["multipart"].add()

    # -- deleting --------------------------------------------------------------

    async def _remove_files(self, doomed: list[_Doomed]) -> None:
        """Delete the files `doomed` in one driver call, publish and count them.

        Unlike `_remove`, a file the walk found that something else deleted
        since still counts as freed: S3 cannot tell which keys a DeleteObjects
        found.
        """
        if not doomed:
            return
        if self.options.dry_run:
            for item in doomed:
                self.report.freed[item.kind].add(item.size)
                self.report.removed.append(item.path)
            return
        if not self.lease.valid:
            raise LeaseLost(f"lost the collection lease; stopped before deleting {doomed[0].path}")
        try:
            await self.driver.delete_files([item.path for item in doomed])
        finally:
            # On error any of them may be gone. A change only tells the other
            # processes to look again, so all of them are published.
            self.unpublished.extend(item.change for item in doomed if item.change is not None)
        for item in doomed:
            self.report.freed[item.kind].add(item.size)

    async def _remove(self, path: str, kind: str, change: Change | None, size: int = 0) -> None:
        """Delete `path`, publish `change`, and count it, unless dry-running (then only count).

        Already gone counts as not freed by us.
        """
        if not self.options.dry_run:
            if not self.lease.valid:
                raise LeaseLost(f"lost the collection lease; stopped before deleting {path}")
            try:
                await self.driver.delete(path)
            except PathNotFound:
                return
            if change is not None:
                self.unpublished.append(change)
        else:
            self.report.removed.append(path)
        self.report.freed[kind].add(size)

    def _tally_examined(self) -> None:
        examined = self.report.examined
        for info in self.inventory.blobs.values():
            examined["blobs"].add(info.size)
        for repo in self.inventory.repositories.values():
            examined["manifests"].count += len(repo.revisions)
            examined["tags"].count += len(repo.tags)
            examined["layer_links"].count += len(repo.layers)
        for info in self.inventory.staged:
            examined["staged"].add(info.size)
        examined["uploads"].count = len(self.inventory.uploads)


@dataclass(frozen=True, slots=True)
class _Doomed:
    """A path to delete: what it counts as in the report, and the change that says it went."""

    path: str
    kind: str
    change: Change | None
    size: int = 0


def _next_size(size: int, took: float) -> int:
    """How many blobs the next step of the sweep deletes, after `size` took `took` seconds.

    Towards `_STEP_SECONDS` a step, at most doubling or halving at a time,
    so that one slow call (a busy disk) does not swing it.
    """
    wanted = size * _STEP_SECONDS / max(took, 1e-3)
    return max(1, size // 2, min(2 * size, round(wanted)))


def _roots(repositories: dict[str, RepositoryState]) -> set[str]:
    """Every manifest revision: what marking starts from, as in Distribution.

    A tag whose manifest has no revision is not a root: a push writes the
    revision before the tag, so such a tag is left over from a deleted
    manifest and no registry serves it.
    """
    return {d for repo in repositories.values() for d in repo.revisions}
