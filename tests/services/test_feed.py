"""The change feed on every driver: batched records, read by the others, trimmed."""

from __future__ import annotations

import pytest

from registry.drivers.base import StorageDriver
from registry.services.feed import FEED, Change, ChangeFeed


class Clock:
    """A settable clock, in seconds since the epoch."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(driver: StorageDriver, clock: Clock, retention: float = 600.0) -> ChangeFeed:
    return ChangeFeed(driver, lookback=10.0, retention=retention, clock=clock)


async def records(driver: StorageDriver) -> list[str]:
    return [info.path async for info in driver.walk(FEED)]


class TestPublishing:
    async def test_changes_published_together_are_written_as_one_record(
        self, driver: StorageDriver
    ) -> None:
        writer = feed(driver, Clock())
        for n in range(50):
            writer.publish(Change("tag", "lib/app", tag=f"v{n}"))
        await writer.flush()
        assert len(await records(driver)) == 1
        assert writer.records_written == 1

    async def test_published_changes_are_written_without_a_flush(
        self, driver: StorageDriver
    ) -> None:
        writer = feed(driver, Clock())
        writer.publish(Change("layer", "lib/app", digest="sha256:" + "a" * 64))
        await writer.close()
        assert len(await records(driver)) == 1


class TestFollowing:
    async def test_a_reader_gets_the_changes_of_other_writers_once(
        self, driver: StorageDriver
    ) -> None:
        clock = Clock()
        reader, writer = feed(driver, clock), feed(driver, clock)
        change = Change("manifest", "lib/app", digest="sha256:" + "b" * 64)
        writer.publish(change)
        await writer.flush()
        clock.now += 1
        assert await reader.poll() == [change]
        clock.now += 1
        assert await reader.poll() == []

    async def test_a_writer_does_not_read_its_own_changes(self, driver: StorageDriver) -> None:
        clock = Clock()
        writer = feed(driver, clock)
        writer.publish(Change("tag", "lib/app", tag="v1"))
        await writer.flush()
        assert await writer.poll() == []

    async def test_a_record_that_becomes_visible_late_is_still_read(
        self, driver: StorageDriver
    ) -> None:
        """A batch stamped before newer ones, but stored after them (a slow write, a host
        whose clock is behind), is read as long as it is within the lookback."""
        clock = Clock()
        reader, fast, slow = feed(driver, clock), feed(driver, clock), feed(driver, clock)
        clock.now += 5
        fast.publish(Change("tag", "a", tag="new"))
        await fast.flush()
        assert await reader.poll() == [Change("tag", "a", tag="new")]
        clock.now -= 3  # the slow writer's stamp is older than what the reader saw
        slow.publish(Change("tag", "b", tag="late"))
        await slow.flush()
        clock.now += 4
        assert await reader.poll() == [Change("tag", "b", tag="late")]

    async def test_an_unreadable_record_is_skipped(self, driver: StorageDriver) -> None:
        clock = Clock()
        reader, writer = feed(driver, clock), feed(driver, clock)
        await driver.put_content(
            f"{FEED}/{int(clock.now * 1000):013d}-{'f' * 12}-000000001",
            b'not json\n{"kind": "nonsense"}',
        )
        writer.publish(Change("blob", digest="sha256:" + "c" * 64))
        await writer.flush()
        assert await reader.poll() == [Change("blob", digest="sha256:" + "c" * 64)]

    async def test_a_reader_that_did_not_read_for_longer_than_the_retention_is_told_to_reload(
        self, driver: StorageDriver
    ) -> None:
        clock = Clock()
        reader = feed(driver, clock, retention=60)
        assert await reader.poll() == []
        clock.now += 55
        assert await reader.poll() is None
        reader.restart_from_now()
        clock.now += 1
        assert await reader.poll() == []


class TestTrimming:
    @pytest.mark.parametrize("age", [0, 599])
    async def test_young_records_are_kept(self, driver: StorageDriver, age: float) -> None:
        clock = Clock()
        writer = feed(driver, clock)
        writer.publish(Change("tag", "a", tag="t"))
        await writer.flush()
        clock.now += age
        assert await writer.trim() == 0
        assert len(await records(driver)) == 1

    async def test_a_writer_trims_its_own_old_records_and_anyones_very_old_ones(
        self, driver: StorageDriver
    ) -> None:
        clock = Clock()
        mine, gone, alive = feed(driver, clock), feed(driver, clock), feed(driver, clock)
        for writer in (gone, mine):
            writer.publish(Change("tag", "a", tag="old"))
            await writer.flush()
        clock.now += 700
        alive.publish(Change("tag", "a", tag="recent"))
        await alive.flush()
        assert await mine.trim() == 1  # its own; the dead writer's is not old enough yet
        assert len(await records(driver)) == 2
        clock.now += 600
        assert await mine.trim() == 1  # the dead writer's, now twice the retention old
        assert len(await records(driver)) == 1
