"""When each tag was last pulled, for retention rules, without a storage write per pull.

Every process keeps the latest pull time of each (repository, reference) it
served in memory and, at most every `FLUSH_SECONDS`, writes all of them as
one small JSON object of its own under `/cargobay/pulls/` (outside
`repositories/` and `blobs/`, so Distribution never sees it). A process
rewrites only its own object, so replicas never overwrite one another's;
a collection reads them all and keeps the latest time of each reference. An
object outlives the process that wrote it (a restart starts a new one), and
collections fold objects untouched for a day into one, so they do not pile up.

A crash loses at most the last `FLUSH_SECONDS` of pulls, which can only make
a retention rule keep a tag for less long than it would have.

`PullRecorder` wraps the manifest store and records every successful `get`,
as Distribution's notification listener wraps the services: the store itself
knows nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError
from registry.services.manifests import ManifestStore, PutResult, StoredManifest, TagPage

log = logging.getLogger(__name__)

PULLS = "/cargobay/pulls"
FLUSH_SECONDS = 30.0
#: Objects untouched this long belong to processes that are gone: folded by collections.
_STALE_SECONDS = 86400.0

Pulls = dict[tuple[str, str], float]


class PullLog:
    """This process's pull times, flushed to its own object in storage."""

    def __init__(self, driver: StorageDriver, clock: Callable[[], float] = time.time) -> None:
        self._driver = driver
        self._clock = clock
        self._path = f"{PULLS}/{uuid.uuid4().hex}"
        self._times: Pulls = {}
        self._dirty = False

    def record(self, repository: str, reference: str) -> None:
        """Note a pull of `reference` (a tag or a digest) from `repository`, now."""
        self._times[(repository, reference)] = self._clock()
        self._dirty = True

    async def flush(self) -> None:
        """Write every pull recorded since start, if any is new; storage errors pass through."""
        if not self._dirty:
            return
        self._dirty = False
        try:
            await self._driver.put_content(self._path, _encode(self._times))
        except BaseException:
            self._dirty = True
            raise

    async def run(self) -> None:
        """Flush every `FLUSH_SECONDS` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self.flush()
                except StorageError as e:
                    log.warning("cannot record pull times, retrying later: %s", e)
        finally:
            with contextlib.suppress(StorageError):
                await self.flush()


async def load_pulls(driver: StorageDriver, now: float, fold: bool = False) -> Pulls:
    """The latest recorded pull of every reference, merged from every process's object.

    With `fold`, objects untouched for a day are replaced by one holding what
    they held. An unreadable object is skipped.
    """
    merged: Pulls = {}
    stale: list[str] = []
    async for info in driver.walk(PULLS):
        try:
            times = _decode(await driver.get_content(info.path))
        except PathNotFound:
            continue
        except ValueError:
            log.warning("skipping unreadable pull record %s", info.path)
            continue
        for key, at in times.items():
            merged[key] = max(merged.get(key, 0.0), at)
        if now - info.modified > _STALE_SECONDS:
            stale.append(info.path)
    if fold and len(stale) > 1:
        # Written first, deleted after: a crash in between duplicates, never loses.
        await driver.put_content(f"{PULLS}/{uuid.uuid4().hex}", _encode(merged))
        for path in stale:
            with contextlib.suppress(PathNotFound):
                await driver.delete(path)
    return merged


def _encode(times: Pulls) -> bytes:
    by_repository: dict[str, dict[str, float]] = {}
    for (repository, reference), at in times.items():
        by_repository.setdefault(repository, {})[reference] = at
    return json.dumps(by_repository, separators=(",", ":")).encode()


def _decode(data: bytes) -> Pulls:
    document: Any = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("not an object")
    return {
        (repository, reference): float(at)
        for repository, references in document.items()
        for reference, at in references.items()
    }


class PullRecorder(ManifestStore):
    """`inner`, recording each manifest it serves in `pulls`. Every public method delegates."""

    def __init__(self, inner: ManifestStore, pulls: PullLog) -> None:
        # Not initialised as a store of its own: all state is `inner`'s.
        self._inner = inner
        self._pulls = pulls

    async def get(self, name: str, reference: str) -> StoredManifest:
        stored = await self._inner.get(name, reference)
        self._pulls.record(name, reference)
        return stored

    async def put(
        self, name: str, reference: str, content_type: str | None, data: bytes
    ) -> PutResult:
        return await self._inner.put(name, reference, content_type, data)

    async def delete(self, name: str, reference: str) -> None:
        await self._inner.delete(name, reference)

    async def tags(self, name: str, last: str | None = None, n: int | None = None) -> TagPage:
        return await self._inner.tags(name, last, n)

    def forget_referrers(self, name: str) -> None:
        self._inner.forget_referrers(name)

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._inner.referrers(name, subject, artifact_type)
