"""When proxied manifests were last pulled: what garbage collection's retention keeps.

A proxied repository's default retention keeps what was pulled within its
upstream's `retention_days`. The pull-through cache records, per repository
and manifest digest, the time of the last pull, in storage (so every process
and a restart see it), at most once a day per manifest and process, so a pull
storm writes nothing:

    /cargobay/proxy/pulls/<repository>/<algorithm>/<hex>   ISO 8601 UTC time

Garbage collection asks `last_pulled(driver, repository, digest)`. The files
live outside Distribution's tree, which Distribution never reads.
"""

from __future__ import annotations

import datetime
import logging

from cachetools import TTLCache

from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError

log = logging.getLogger(__name__)

ROOT = "/cargobay/proxy/pulls"
# A day: retention is counted in days, so a finer record would only cost writes.
_RECORD_EVERY_SECONDS = 24 * 3600
_REMEMBERED = 100_000


def pull_record(name: str, digest: Digest) -> str:
    """The path recording the last pull of manifest `digest` in repository `name`."""
    return f"{ROOT}/{name}/{digest.algorithm}/{digest.hex}"


async def last_pulled(driver: StorageDriver, name: str, digest: Digest) -> datetime.datetime | None:
    """When manifest `digest` of repository `name` was last pulled through the cache.

    None if never recorded, or if the record is unreadable; `StorageError`
    for a backend fault.
    """
    try:
        text = (await driver.get_content(pull_record(name, digest))).decode()
    except PathNotFound:
        return None
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


class PullRecorder:
    """Writes pull records, skipping those written by this process within a day."""

    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver
        self._recent: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=_REMEMBERED, ttl=_RECORD_EVERY_SECONDS
        )

    async def record(self, name: str, digest: str) -> None:
        """Note a pull of manifest `digest` in `name`; a storage fault is logged, not raised."""
        key = (name, digest)
        if key in self._recent:
            return
        self._recent[key] = True
        now = datetime.datetime.now(datetime.UTC).isoformat()
        try:
            await self._driver.put_content(pull_record(name, Digest.parse(digest)), now.encode())
        except StorageError as e:
            self._recent.pop(key, None)
            log.warning("could not record the pull of %s@%s: %s", name, digest, e)
