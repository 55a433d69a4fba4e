"""Expired upload sessions are purged; everything else is left alone. Run on every driver."""

from __future__ import annotations

import asyncio
import time

import pytest

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import BlobUploadUnknown, PathNotFound
from registry.services.purge import purge_uploads, purge_uploads_periodically
from tests.services.stores import body, uploads

HOUR = 3600.0


async def exists(driver: StorageDriver, path: str) -> bool:
    """True if a file or a non-empty directory is at `path`."""
    try:
        await driver.stat(path)
    except PathNotFound:
        return False
    return True


class TestPurgeUploads:
    async def test_sessions_older_than_the_expiry_go_and_younger_ones_stay(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        old = store.start("team/app")
        await store.append("team/app", old, body(b"abandoned bytes"), fresh=True)
        young = store.start("team/app")
        await store.append("team/app", young, body(b"recent bytes"), fresh=True)
        await driver.put_content(
            layout.upload_started_at("team/app", old), b"2020-01-02T03:04:05.123456789Z"
        )

        assert await purge_uploads(driver, max_age=HOUR) == 1
        assert not await exists(driver, layout.upload_dir("team/app", old))
        assert await store.size("team/app", young) == len(b"recent bytes")

    async def test_blobs_manifests_and_finished_uploads_are_untouched(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload = store.start("team/app")
        blob = await store.finish("team/app", upload, Digest.of(b"data"), body(b"data"), fresh=True)

        assert await purge_uploads(driver, max_age=0, now=time.time() + 10 * HOUR) == 0
        assert await driver.get_content(layout.blob_data(blob.digest)) == b"data"
        assert await exists(driver, layout.layer_link("team/app", blob.digest))

    async def test_unreadable_start_time_falls_back_to_the_file_time(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload = store.start("a")
        await driver.put_content(layout.upload_started_at("a", upload), b"yesterday-ish")

        assert await purge_uploads(driver, max_age=HOUR) == 0
        assert await purge_uploads(driver, max_age=HOUR, now=time.time() + 2 * HOUR) == 1

    async def test_session_without_a_start_time_ages_from_its_last_write(
        self, driver: StorageDriver
    ) -> None:
        """What a monolithic upload interrupted by a crash leaves behind."""
        await driver.put_content(layout.upload_data("a", "leftover"), b"partial")

        assert await purge_uploads(driver, max_age=HOUR) == 0
        assert await purge_uploads(driver, max_age=HOUR, now=time.time() + 2 * HOUR) == 1
        assert not await exists(driver, layout.upload_dir("a", "leftover"))

    async def test_purged_session_is_unknown_to_its_client(self, driver: StorageDriver) -> None:
        store = await uploads(driver)
        upload = store.start("a")
        await store.append("a", upload, body(b"early"), fresh=True)
        await purge_uploads(driver, max_age=HOUR, now=time.time() + 2 * HOUR)

        with pytest.raises(BlobUploadUnknown):
            await store.append("a", upload, body(b"late"))


class TestPeriodicPurge:
    async def test_background_purge_runs_until_cancelled(self, driver: StorageDriver) -> None:
        await driver.put_content(layout.upload_started_at("a", "old"), b"2001-01-01T00:00:00Z")
        task = asyncio.create_task(purge_uploads_periodically(driver, max_age=0.5))
        try:
            for _ in range(100):
                if not await exists(driver, layout.upload_dir("a", "old")):
                    break
                await asyncio.sleep(0.05)
            assert not await exists(driver, layout.upload_dir("a", "old"))
        finally:
            task.cancel()
