"""The change feed: how a process tells the others sharing its storage what it wrote.

Storage is the truth; the feed only says where to look. After each
acknowledged write a process publishes a `Change` naming what changed (a tag,
a manifest revision, a layer link, a blob, a repository). Changes are batched
and written as one small object per batch under `/cargobay/feed/`, outside
Distribution's `docker/registry/v2` tree, so Distribution sharing the storage
neither sees nor minds them. Every process reads the feed once per interval
and, for each change another process published, re-reads what it names from
storage (`registry.services.sync`). Re-reading, rather than trusting a value
carried in the record, makes the order in which records are seen irrelevant:
whatever storage says last wins, as it does for Distribution.

A record lost in a crash (written after the acknowledged write, never before)
only delays convergence until the periodic reconciliation: the data itself is
in storage already, and every read that misses the index asks storage.

Keys are `<milliseconds since the epoch, 13 digits>-<writer id>-<sequence>`,
so a listing returns them in time order. A batch becomes visible some time
after its timestamp (the write takes time, and hosts' clocks differ), so each
read lists from `lookback` before the newest record seen and skips keys it
has seen already. Records older than `retention` are deleted by their writer
(or by anyone, at twice that age, when the writer is gone); a reader that has
not read the feed for longer than `retention - lookback` may have missed
trimmed records, and `poll` says so by returning None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson

from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError

log = logging.getLogger(__name__)

#: Where the feed lives: beside, not inside, Distribution's tree.
FEED = "/cargobay/feed"
KINDS = frozenset({"manifest", "tag", "layer", "blob", "repository"})

_KEY_RE = re.compile(r"(\d{13})-([0-9a-f]{12})-(\d{9})")
# A batch waits this long for company before it is written; while a write is
# under way, new changes wait for it and go in the next batch.
_BATCH_DELAY = 0.005
# Changes held while storage refuses batch writes; past this the oldest go
# (reconciliation covers them).
_MAX_PENDING = 100_000
# Records fetched at once by one poll.
_FETCH_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Change:
    """A hint to the other processes: re-read this from storage.

    `kind` is one of `KINDS`: "manifest" (a revision link of `repository`,
    `digest`), "tag" (`repository`, `tag`), "layer" (a layer link of
    `repository`, `digest`), "blob" (the content of `digest`, in any
    repository) or "repository" (all of `repository`).
    """

    kind: str
    repository: str = ""
    digest: str = ""
    tag: str = ""


class ChangeFeed:
    """One process's end of the feed: it publishes its own changes and polls for others'.

    `publish` never waits for storage; `flush` writes what is pending. A
    batch that storage refuses is kept and written with the next one (up to
    `_MAX_PENDING` changes). Polls and trims are the caller's to schedule.
    """

    def __init__(
        self,
        driver: StorageDriver,
        *,
        lookback: float = 10.0,
        retention: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._driver = driver
        self._lookback_ms = int(lookback * 1000)
        self._retention = retention
        self._clock = clock
        self.writer_id = secrets.token_hex(6)
        self._sequence = 0
        self._pending: list[Change] = []
        self._flushing: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        # The newest record seen, and the keys seen since `lookback` before it.
        self._cursor_ms = int(clock() * 1000)
        self._seen: dict[str, int] = {}
        self._last_poll = clock()
        #: Batches this process has written to the feed.
        self.records_written = 0

    # -- publishing ----------------------------------------------------------

    def publish(self, change: Change) -> None:
        """Queue `change` for the next batch; the batch is written a few milliseconds later."""
        self._pending.append(change)
        if len(self._pending) > _MAX_PENDING:
            del self._pending[: len(self._pending) - _MAX_PENDING]
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def flush(self) -> None:
        """Write every change published so far. A storage error is logged; they stay queued."""
        async with self._write_lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(batch)
                except StorageError as e:
                    log.warning("change feed: %d changes not written yet: %s", len(batch), e)
                    self._pending[:0] = batch
                    return

    async def close(self) -> None:
        """Write what is pending and stop the batching task."""
        await self.flush()
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing

    async def _flush_soon(self) -> None:
        await asyncio.sleep(_BATCH_DELAY)
        await self.flush()

    async def _write(self, batch: list[Change]) -> None:
        self._sequence += 1
        key = f"{int(self._clock() * 1000):013d}-{self.writer_id}-{self._sequence:09d}"
        body = b"\n".join(orjson.dumps(asdict(change)) for change in batch)
        await self._driver.put_content(f"{FEED}/{key}", body)
        self.records_written += 1

    # -- following -----------------------------------------------------------

    async def poll(self) -> list[Change] | None:
        """The changes other processes published since the last poll, in key order.

        Returns None when this process has not polled for so long that
        records it never read may have been trimmed: the caller must reload
        from storage. Raises `StorageError` if the feed cannot be listed;
        the next poll reads from the same point.
        """
        now = self._clock()
        behind = now - self._last_poll > self._retention - self._lookback_ms / 1000
        start = max(self._cursor_ms - self._lookback_ms, 0)
        fresh: list[str] = []
        newest = self._cursor_ms
        async for info in self._driver.walk(FEED, start_after=f"{FEED}/{start:013d}"):
            key = info.path.rpartition("/")[2]
            match = _KEY_RE.fullmatch(key)
            if match is None or key in self._seen:
                continue
            stamp = int(match.group(1))
            self._seen[key] = stamp
            newest = max(newest, stamp)
            if match.group(2) != self.writer_id:
                fresh.append(info.path)
        changes = [c for batch in await self._read_all(fresh) for c in batch]
        self._cursor_ms = newest
        horizon = newest - self._lookback_ms
        self._seen = {k: s for k, s in self._seen.items() if s >= horizon}
        self._last_poll = now
        return None if behind else changes

    def restart_from_now(self) -> None:
        """Forget what was read: the caller reloaded from storage, which holds it all."""
        self._last_poll = self._clock()

    async def _read_all(self, paths: list[str]) -> list[list[Change]]:
        limit = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def read(path: str) -> list[Change]:
            async with limit:
                try:
                    data = await self._driver.get_content(path)
                except PathNotFound:
                    return []  # trimmed since the listing: too old to matter
            return _parse(path, data)

        return await asyncio.gather(*(read(p) for p in paths))

    # -- trimming ------------------------------------------------------------

    async def trim(self) -> int:
        """Delete this writer's records older than the retention, and anyone's twice as old.

        Returns how many were deleted. Raises `StorageError` if the feed
        cannot be listed; a record that cannot be deleted is left for next time.
        """
        now_ms = int(self._clock() * 1000)
        own = now_ms - int(self._retention * 1000)
        anyone = now_ms - int(2 * self._retention * 1000)
        doomed = []
        async for info in self._driver.walk(FEED):
            match = _KEY_RE.fullmatch(info.path.rpartition("/")[2])
            if match is None:
                continue
            stamp = int(match.group(1))
            if stamp >= own:
                break  # keys are in time order: the rest are younger
            if match.group(2) == self.writer_id or stamp < anyone:
                doomed.append(info.path)
        deleted = 0
        for path in doomed:
            with contextlib.suppress(PathNotFound):
                try:
                    await self._driver.delete(path)
                    deleted += 1
                except StorageError as e:
                    log.warning("change feed: could not trim %s: %s", path, e)
        return deleted


def _parse(path: str, data: bytes) -> list[Change]:
    changes = []
    for line in data.splitlines():
        try:
            fields = orjson.loads(line)
            change = Change(
                kind=str(fields["kind"]),
                repository=str(fields.get("repository", "")),
                digest=str(fields.get("digest", "")),
                tag=str(fields.get("tag", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("change feed: skipping an unreadable record in %s", path)
            continue
        if change.kind in KINDS:
            changes.append(change)
    return changes
