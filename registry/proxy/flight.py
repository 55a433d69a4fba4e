"""One upstream download of a blob, written to storage and read by every client meanwhile.

The download runs in its own task, so no client owns it: one that disconnects
stops reading, the download goes on for the others and for the cache. The
bytes go to storage through the upload path (staged at the blob's path,
committed only once they match the digest) and, as they arrive, to a spool
file (unlinked, so nothing is left behind) that any number of readers follow,
each from its own offset: that is how the first client streams while the blob
is fetched, and how concurrent requests and `Range` requests are answered
from the one download.

Readers never get the blob's last byte before the digest is verified: a
corrupt download ends every reader short (the HTTP layer then drops the
connection), so no client takes a wrong blob for a whole one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable

from registry.errors import UpstreamUnavailable

log = logging.getLogger(__name__)

# Largest piece handed to a reader at once; a spool read is a page-cache copy.
_READ_PIECE = 1024 * 1024


class FetchFailed(UpstreamUnavailable):
    """The download ended without a verified blob; readers stop short."""


class BlobFlight:
    """The state of one download: how much has arrived, and whether it ended well.

    `run(download)` is the download (in a task of its own); `length()` waits
    until the size is known; `read(offset, length)` follows the bytes.
    """

    def __init__(self, digest: str, spool_dir: str | None = None) -> None:
        self.digest = digest
        self._spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed by _release
        self._size: int | None = None
        self._received = 0
        self._verified = False
        self._ended = False
        self._error: BaseException | None = None
        self._progress = asyncio.Event()
        self._readers = 0

    # -- the download side -----------------------------------------------------

    def announce(self, size: int | None) -> None:
        """The upstream said how long the blob is (None: it did not)."""
        self._size = size
        self._notify()

    def append(self, chunk: bytes) -> None:
        """Bytes that arrived, in order; readers may follow them at once."""
        os.pwrite(self._spool.fileno(), chunk, self._received)
        self._received += len(chunk)
        self._notify()

    async def run(self, download: Callable[[BlobFlight], Awaitable[None]]) -> None:
        """Run `download(self)`; it returns once the blob is verified and committed.

        Whatever it raises is kept for the readers and `length()` callers
        (and logged); only cancellation propagates.
        """
        try:
            await download(self)
            if self._size is None:
                self._size = self._received
            self._verified = True
        except Exception as e:
            log.warning("fetch of %s failed: %s", self.digest, e)
            self._error = e
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._ended = True
            self._notify()
            self._release()

    # -- the readers' side -----------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def received(self) -> int:
        """Bytes the download brought so far."""
        return self._received

    async def length(self) -> int:
        """The blob's size, once known; re-raises the download's error if it failed first."""
        while True:
            if self._error is not None:
                raise self._error
            if self._size is not None:
                return self._size
            if self._ended:
                raise FetchFailed(f"download of {self.digest} failed")
            await self._wait()

    async def outcome(self) -> None:
        """Return once the download ended well; re-raise its error if it did not."""
        while not self._ended:
            await self._wait()
        if self._error is not None:
            raise self._error

    def attach(self) -> bool:
        """Start reading; False if the spool is gone (the download ended, nobody reads)."""
        if self._spool.closed:
            return False
        self._readers += 1
        return True

    async def read(self, offset: int, length: int) -> AsyncGenerator[bytes, None]:
        """`length` bytes from `offset`, as they arrive; call after `attach()` returned True.

        Raises `FetchFailed` if the download fails before they all arrived.
        """
        position, end = offset, offset + length
        try:
            while position < end:
                available = self._available()
                if available <= position:
                    if self._ended:
                        raise FetchFailed(f"download of {self.digest} failed") from self._error
                    await self._wait()
                    continue
                size = min(end, available) - position
                chunk = os.pread(self._spool.fileno(), min(size, _READ_PIECE), position)
                position += len(chunk)
                yield chunk
        finally:
            self._readers -= 1
            self._release()

    def _available(self) -> int:
        """Bytes readers may have: all once verified, else all but the last one."""
        if self._verified:
            return self._received
        if self._error is not None:
            return 0
        limit = self._size - 1 if self._size is not None else self._received - 1
        return max(min(self._received, limit), 0)

    async def _wait(self) -> None:
        await self._progress.wait()

    def _notify(self) -> None:
        # Waiters wake on the event they saw; the next ones wait on a fresh one.
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    def _release(self) -> None:
        if self._ended and self._readers == 0 and not self._spool.closed:
            self._spool.close()
