"""Exactly one collector holds the lease, even when several start at the same moment."""

from __future__ import annotations

import asyncio

import pytest

from registry.drivers.base import StorageDriver
from registry.gc import GcOptions, Lease, LeaseHeld, collect
from registry.gc.lease import LEASE_PATH
from tests.gc.storage import Published, exists


class TestLease:
    async def test_of_collectors_starting_together_exactly_one_wins(
        self, driver: StorageDriver
    ) -> None:
        leases = [Lease(driver, settle=0.5) for _ in range(4)]
        results = await asyncio.gather(
            *(lease.acquire() for lease in leases), return_exceptions=True
        )
        winners = [lease for lease, result in zip(leases, results, strict=True) if result is None]
        assert len(winners) == 1
        assert all(isinstance(r, LeaseHeld) for r in results if r is not None)
        assert (await winners[0].read()) is not None

    async def test_of_collections_starting_together_exactly_one_runs(
        self, driver: StorageDriver
    ) -> None:
        runs = [
            collect(driver, GcOptions(), Published(), lease=Lease(driver, settle=0.5))
            for _ in range(2)
        ]
        results = await asyncio.gather(*runs, return_exceptions=True)
        assert sum(isinstance(r, LeaseHeld) for r in results) == 1
        assert not await exists(driver, LEASE_PATH)

    async def test_an_expired_lease_is_taken_over(self, driver: StorageDriver) -> None:
        now = [1000.0]
        dead = Lease(driver, ttl=60, settle=0, clock=lambda: now[0])
        await dead.acquire()
        successor = Lease(driver, ttl=60, settle=0, clock=lambda: now[0])
        with pytest.raises(LeaseHeld, match=dead.holder):
            await successor.acquire()
        now[0] += 61
        await successor.acquire()
        assert not await dead.renew()
        assert dead.lost and not dead.valid
        assert successor.valid

    async def test_a_holder_whose_renewals_stop_is_no_longer_valid(
        self, driver: StorageDriver
    ) -> None:
        now = [1000.0]
        lease = Lease(driver, ttl=60, settle=0, clock=lambda: now[0])
        await lease.acquire()
        now[0] += 59
        assert lease.valid
        now[0] += 2
        assert not lease.valid
