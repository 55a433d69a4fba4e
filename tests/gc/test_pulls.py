"""Pull times are recorded in memory, flushed per process, and merged across processes."""

from __future__ import annotations

import time

import pytest

from registry.drivers.base import StorageDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.errors import ManifestUnknown
from registry.gc.pulls import PULLS, PullLog, PullRecorder, load_pulls
from registry.services.blobs import BlobStore
from registry.services.index import TagIndex
from registry.services.manifests import ManifestStore
from tests.gc.storage import put_blob
from tests.manifest import samples as s


class TestPullLog:
    async def test_pulls_write_nothing_until_flushed(self, driver: StorageDriver) -> None:
        log = PullLog(driver)
        log.record("team/app", "v1")
        assert [i async for i in driver.walk(PULLS)] == []
        await log.flush()
        assert (await load_pulls(driver, time.time()))[("team/app", "v1")] > 0

    async def test_replicas_merge_to_the_latest_pull_and_survive_a_restart(
        self, driver: StorageDriver
    ) -> None:
        first = PullLog(driver, clock=lambda: 100.0)
        second = PullLog(driver, clock=lambda: 200.0)
        first.record("team/app", "v1")
        first.record("team/app", "v2")
        second.record("team/app", "v1")
        await first.flush()
        await second.flush()
        del first, second  # both processes gone: their records stay
        pulls = await load_pulls(driver, time.time())
        assert pulls == {("team/app", "v1"): 200.0, ("team/app", "v2"): 100.0}

    async def test_folding_stale_records_keeps_every_pull(self, driver: StorageDriver) -> None:
        for at in (100.0, 200.0, 300.0):
            log = PullLog(driver, clock=lambda at=at: at)
            log.record("team/app", f"t{int(at)}")
            await log.flush()
        later = time.time() + 2 * 86400
        folded = await load_pulls(driver, later, fold=True)
        assert len([i async for i in driver.walk(PULLS)]) == 1
        assert await load_pulls(driver, later) == folded
        assert len(folded) == 3


class TestPullRecorder:
    async def test_a_served_manifest_is_recorded_and_a_missing_one_is_not(self) -> None:
        driver = InMemoryDriver()
        index = TagIndex()
        blobs = BlobStore(driver, index, delete_enabled=True)
        log = PullLog(driver)
        store = PullRecorder(ManifestStore(driver, index, blobs, True), log)
        config = await put_blob(driver, "team/app", b"config")
        layer = await put_blob(driver, "team/app", b"layer")
        index.add_layer("team/app", config)
        index.add_layer("team/app", layer)
        await store.put("team/app", "v1", None, s.oci_image_manifest((config, 6), [(layer, 5)]))
        await store.get("team/app", "v1")
        with pytest.raises(ManifestUnknown):
            await store.get("team/app", "nope")
        await log.flush()
        assert set(await load_pulls(driver, time.time())) == {("team/app", "v1")}

    def test_every_public_method_of_the_store_is_wrapped(self) -> None:
        public = {n for n in vars(ManifestStore) if not n.startswith("_")}
        assert public <= set(vars(PullRecorder))
