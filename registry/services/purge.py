"""Purging abandoned upload sessions, as Distribution's upload purger does.

A client that starts a blob upload and never finishes it leaves its bytes
under `_uploads/<id>/`. Sessions older than `limits.upload_expiry_seconds`
are deleted; their age counts from the `startedat` time written when they
were opened (Distribution writes the same file, so its sessions are purged
too), or from the last write of a session that has none. A session still in
use when it expires is purged all the same: its client gets
`BLOB_UPLOAD_UNKNOWN` and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time

from registry import layout
from registry.drivers.base import FileInfo, StorageDriver
from registry.errors import PathNotFound, StorageError

log = logging.getLogger(__name__)

# The first purge waits so as not to compete with the background index load,
# which walks the same tree.
_FIRST_RUN_DELAY = 60.0
_MAX_INTERVAL = 24 * 3600.0


async def purge_uploads(driver: StorageDriver, max_age: float, now: float | None = None) -> int:
    """Delete every upload session started more than `max_age` seconds before `now`.

    Returns how many were deleted. A session deleted meanwhile by someone
    else is skipped; a storage error on one session is logged and the others
    are still purged.
    """
    now = time.time() if now is None else now
    ages = UploadAges()
    async for info in driver.walk(layout.REPOSITORIES):
        ages.add(info)
    purged = 0
    for directory in await ages.expired(driver, max_age, now):
        try:
            with contextlib.suppress(PathNotFound):
                await driver.delete(directory)
                purged += 1
        except StorageError as e:
            log.warning("cannot purge upload %s: %s", directory, e)
    return purged


class UploadAges:
    """The upload sessions among files found walking `repositories/`, and when each started.

    Shared by the purger and garbage collection, which walk the same tree.
    """

    def __init__(self) -> None:
        self._started: dict[str, FileInfo] = {}
        self._last_write: dict[str, float] = {}

    def add(self, info: FileInfo) -> bool:
        """Note `info` if it belongs to an upload session; whether it does."""
        entry = layout.parse_repository_path(info.path)
        if entry is None or entry.kind != "upload":
            return False
        directory = layout.upload_dir(entry.name, entry.tag)
        if info.path == layout.upload_started_at(entry.name, entry.tag):
            self._started[directory] = info
        else:
            self._last_write[directory] = max(self._last_write.get(directory, 0.0), info.modified)
        return True

    def __len__(self) -> int:
        return len(self._started.keys() | self._last_write.keys())

    async def expired(self, driver: StorageDriver, max_age: float, now: float) -> list[str]:
        """Directories of the sessions started more than `max_age` seconds before `now`, sorted.

        Reads each `startedat` file (one whose content is unreadable counts
        from the file's time).
        """
        expired = []
        for directory in sorted(self._started.keys() | self._last_write.keys()):
            info = self._started.get(directory)
            since = self._last_write[directory] if info is None else await _started_at(driver, info)
            if now - since > max_age:
                expired.append(directory)
        return expired


async def purge_uploads_periodically(driver: StorageDriver, max_age: float) -> None:
    """Purge expired sessions now and then, until cancelled; failures wait for the next round.

    Rounds are `max_age / 2` apart (at most a day), so no session outlives
    its expiry by more than half of it.
    """
    interval = min(max(max_age / 2, 1.0), _MAX_INTERVAL)
    await asyncio.sleep(min(_FIRST_RUN_DELAY, interval))
    while True:
        try:
            purged = await purge_uploads(driver, max_age)
        except StorageError as e:
            log.warning("upload purge failed, retrying in %.0f s: %s", interval, e)
        else:
            if purged:
                log.info("purged %d expired upload sessions", purged)
        await asyncio.sleep(interval)


async def _started_at(driver: StorageDriver, info: FileInfo) -> float:
    """The time in a `startedat` file (RFC 3339), or the file's own time if unreadable."""
    try:
        text = (await driver.get_content(info.path)).decode().strip()
        return datetime.datetime.fromisoformat(text).timestamp()
    except (StorageError, UnicodeDecodeError, ValueError):
        return info.modified
