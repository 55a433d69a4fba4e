"""One collection at a time across every process and host: a lease kept in storage.

The lease is a small object outside `repositories/` and `blobs/`
(`/cargobay/gc/lease`), naming its holder and when it expires. It works on
any driver, S3 included, without a compare-and-swap: a collector reads the
lease, writes its own if there is none or it expired, waits `settle`
seconds, and reads it back. Collectors that started together all wrote before
any of them reads back (a write follows its read by milliseconds, the
settle is seconds), the last write wins, and every one of them reads that same
last write: exactly one finds its own name. The holder renews the lease
every third of its time to live and checks, as it does, that the lease is
still its own; a holder that finds it is not has lost it (it was stalled
past expiry and someone took over) and must stop deleting. A holder that dies
stops renewing, and the lease is free again once it expires.

Expiry compares wall clocks, so hosts sharing a bucket need clocks kept in
step (NTP) to well within the time to live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from registry.drivers.base import StorageDriver
from registry.errors import PathNotFound, StorageError

LEASE_PATH = "/cargobay/gc/lease"


class LeaseHeld(Exception):
    """Another collector holds the lease."""

    def __init__(self, holder: str, expires: float) -> None:
        super().__init__(f"another collection holds the lease: {holder} (until {expires:.0f})")
        self.holder = holder


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What the lease object says: who holds it, until when."""

    holder: str
    expires: float


class Lease:
    """The collection lease in `driver`'s storage, taken on behalf of `holder`."""

    def __init__(
        self,
        driver: StorageDriver,
        ttl: float = 60.0,
        settle: float = 2.0,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._driver = driver
        self._ttl = ttl
        self._settle = settle
        self._clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Set when a renewal found the lease in other hands: stop deleting.
        self.lost = False
        self._written = 0.0

    @property
    def valid(self) -> bool:
        """Whether this holder may still act: not lost, and its last write not yet expired."""
        return not self.lost and self._clock() < self._written + self._ttl

    async def read(self) -> LeaseRecord | None:
        """The lease as stored; None if there is none or it is unreadable (free either way)."""
        try:
            data = json.loads(await self._driver.get_content(LEASE_PATH))
            return LeaseRecord(str(data["holder"]), float(data["expires"]))
        except PathNotFound:
            return None
        except (ValueError, KeyError, TypeError):
            return None

    async def acquire(self) -> None:
        """Take the lease, or raise `LeaseHeld` naming the holder; storage errors pass through."""
        current = await self.read()
        taken = current is not None and current.holder != self.holder
        if current is not None and taken and current.expires > self._clock():
            raise LeaseHeld(current.holder, current.expires)
        await self._write()
        await asyncio.sleep(self._settle)
        current = await self.read()
        if current is None or current.holder != self.holder:
            raise LeaseHeld(*((current.holder, current.expires) if current else ("unknown", 0.0)))
        self.lost = False

    async def renew(self) -> bool:
        """Extend the lease if it is still ours; whether it is (else `lost` is set)."""
        current = await self.read()
        if current is None or current.holder != self.holder:
            self.lost = True
            return False
        await self._write()
        return True

    async def release(self) -> None:
        """Give the lease up if it is still ours."""
        current = await self.read()
        if current is not None and current.holder == self.holder:
            with contextlib.suppress(PathNotFound):
                await self._driver.delete(LEASE_PATH)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Lease]:
        """Acquire, renew in the background while the block runs, release after it."""
        await self.acquire()
        renewer = asyncio.create_task(self._renew_periodically())
        try:
            yield self
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(StorageError):
                await self.release()

    async def _renew_periodically(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self.renew()
            except StorageError:
                # Not renewed this time; the next try comes well before expiry.
                continue

    async def _write(self) -> None:
        written = self._clock()
        record = {"holder": self.holder, "expires": written + self._ttl}
        await self._driver.put_content(LEASE_PATH, json.dumps(record).encode())
        self._written = written
