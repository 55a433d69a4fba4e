"""Upload sessions in storage: what a push leaves behind, and a final PUT after a crash.

Run on every driver. Each `uploads(driver)` stands for a process of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import uuid

import pytest

from registry import keys, layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.errors import BlobUploadUnknown, DigestInvalid, RangeNotSatisfiable
from registry.services.uploadids import UPLOAD_KEYS
from tests.services.stores import body, uploads

NAME = "team/app"
CONTENT = b"layer bytes " * 1000
DIGEST = Digest("sha256", hashlib.sha256(CONTENT).hexdigest())


async def files_below(driver: StorageDriver, path: str) -> list[str]:
    return [info.path async for info in driver.walk(path)]


class TestSessionsInStorage:
    async def test_opening_a_session_stores_nothing(self, driver: StorageDriver) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        assert await store.size(NAME, upload_id, fresh=True) == 0
        assert await files_below(driver, layout.ROOT) == []

    async def test_a_post_then_a_put_with_the_whole_blob_leaves_no_session_behind(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        blob = await store.finish(
            NAME, upload_id, DIGEST, body(CONTENT[:5000], CONTENT[5000:]), fresh=True
        )
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.repository(NAME)) == [
            layout.layer_link(NAME, DIGEST)
        ]

    async def test_the_first_chunk_stores_the_session_with_the_time_it_was_opened(
        self, driver: StorageDriver
    ) -> None:
        """The purge and garbage collection age a session from its `startedat`."""
        store = await uploads(driver)
        before = datetime.datetime.now(datetime.UTC)
        upload_id = store.start(NAME)
        await asyncio.sleep(0.01)
        await store.append(NAME, upload_id, body(CONTENT[:100]), start=0, fresh=True)
        text = await driver.get_content(layout.upload_started_at(NAME, upload_id))
        started = datetime.datetime.fromisoformat(text.decode())
        assert (
            before - datetime.timedelta(seconds=1)
            <= started
            <= before + datetime.timedelta(seconds=0.009)
        )

    async def test_a_first_chunk_of_no_bytes_stores_nothing(self, driver: StorageDriver) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        assert await store.append(NAME, upload_id, body(), start=0, fresh=True) == 0
        with pytest.raises(RangeNotSatisfiable):
            await store.append(NAME, upload_id, body(b"x"), start=5, fresh=True)
        assert await files_below(driver, layout.ROOT) == []

    async def test_a_session_continued_and_finished_by_other_processes_publishes_the_blob(
        self, driver: StorageDriver
    ) -> None:
        upload_id = (await uploads(driver)).start(NAME)
        first = await uploads(driver)
        await first.append(NAME, upload_id, body(CONTENT[:7000]), start=0, fresh=True)
        second = await uploads(driver)
        assert await second.append(NAME, upload_id, body(CONTENT[7000:9000]), start=7000) == 9000
        blob = await (await uploads(driver)).finish(NAME, upload_id, DIGEST, body(CONTENT[9000:]))
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.upload_dir(NAME, upload_id)) == []

    async def test_a_chunked_upload_of_a_blob_stored_already_leaves_it_whole(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        await store.finish(NAME, store.start(NAME), DIGEST, body(CONTENT), fresh=True)
        upload_id = store.start(NAME)
        await store.append(NAME, upload_id, body(CONTENT[:100]), fresh=True)
        blob = await (await uploads(driver)).finish(NAME, upload_id, DIGEST, body(CONTENT[100:]))
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.repository(NAME)) == [
            layout.layer_link(NAME, DIGEST)
        ]

    async def test_a_session_cancelled_before_any_chunk_leaves_nothing_behind(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        await store.cancel(NAME, upload_id, fresh=True)
        assert await files_below(driver, layout.repository(NAME)) == []

    async def test_a_session_cancelled_after_a_chunk_is_gone_and_unknown(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        await store.append(NAME, upload_id, body(CONTENT[:100]), fresh=True)
        await (await uploads(driver)).cancel(NAME, upload_id)
        assert await files_below(driver, layout.repository(NAME)) == []
        with pytest.raises(BlobUploadUnknown):
            await store.size(NAME, upload_id)

    async def test_content_committed_by_a_process_that_died_is_published_by_the_final_put(
        self, driver: StorageDriver
    ) -> None:
        """The process committed the session's content, then died before publishing it
        under its digest: what the client sends again, the final PUT, finishes the push."""
        upload_id = (await uploads(driver)).start(NAME)
        await driver.put_content(layout.upload_started_at(NAME, upload_id), b"2026-01-01")
        await driver.put_content(layout.upload_data(NAME, upload_id), CONTENT)
        blob = await (await uploads(driver)).finish(NAME, upload_id, DIGEST, None)
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.upload_dir(NAME, upload_id)) == []


class TestStaleLocations:
    """Clients that send a request to the Location of their POST after a PATCH."""

    async def test_a_chunk_sent_as_if_fresh_continues_the_session(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        await store.append(NAME, upload_id, body(CONTENT[:100]), start=0, fresh=True)
        with pytest.raises(RangeNotSatisfiable) as refused:
            await store.append(NAME, upload_id, body(CONTENT[:100]), start=0, fresh=True)
        assert refused.value.size == 100
        assert await store.append(NAME, upload_id, body(CONTENT[100:]), fresh=True) == len(CONTENT)
        blob = await store.finish(NAME, upload_id, DIGEST, None, fresh=True)
        assert await driver.get_content(layout.blob_data(blob.digest)) == CONTENT

    async def test_a_last_chunk_sent_as_a_whole_blob_is_refused_and_the_session_kept(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        await store.append(NAME, upload_id, body(CONTENT[:100]), fresh=True)
        with pytest.raises(RangeNotSatisfiable) as refused:
            await store.finish(NAME, upload_id, DIGEST, body(CONTENT[100:]), fresh=True)
        assert refused.value.size == 100
        assert await files_below(driver, layout.BLOBS) == []
        blob = await store.finish(NAME, upload_id, DIGEST, body(CONTENT[100:]))
        assert await driver.get_content(layout.blob_data(blob.digest)) == CONTENT

    async def test_a_wrong_whole_blob_on_a_session_without_bytes_is_a_wrong_digest(
        self, driver: StorageDriver
    ) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        with pytest.raises(DigestInvalid):
            await store.finish(NAME, upload_id, DIGEST, body(b"other bytes"), fresh=True)
        assert await files_below(driver, layout.ROOT) == []


class TestUploadIds:
    async def test_a_forged_id_is_unknown_to_every_request(self, driver: StorageDriver) -> None:
        store = await uploads(driver)
        real = store.start(NAME)
        forged = real[:-32] + ("0" if real[-32] != "0" else "1") + real[-31:]
        for fresh in (True, False):
            with pytest.raises(BlobUploadUnknown):
                await store.append(NAME, forged, body(b"x"), fresh=fresh)
            with pytest.raises(BlobUploadUnknown):
                await store.finish(NAME, forged, Digest.of(b"x"), body(b"x"), fresh=fresh)
            with pytest.raises(BlobUploadUnknown):
                await store.size(NAME, forged, fresh=fresh)
            with pytest.raises(BlobUploadUnknown):
                await store.cancel(NAME, forged, fresh=fresh)
        assert await files_below(driver, layout.ROOT) == []

    async def test_an_id_is_good_in_its_own_repository_only(self, driver: StorageDriver) -> None:
        store = await uploads(driver)
        upload_id = store.start(NAME)
        with pytest.raises(BlobUploadUnknown):
            await store.finish("team/other", upload_id, Digest.of(b"x"), body(b"x"), fresh=True)
        assert await files_below(driver, layout.ROOT) == []

    async def test_an_id_older_than_the_expiry_is_unknown(self, driver: StorageDriver) -> None:
        store = await uploads(driver, max_age=0.05)
        upload_id = store.start(NAME)
        await asyncio.sleep(0.1)
        with pytest.raises(BlobUploadUnknown):
            await store.append(NAME, upload_id, body(b"late"), fresh=True)

    async def test_an_id_signed_with_a_key_stored_since_is_verified_after_a_relist(
        self, driver: StorageDriver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Processes starting at once may each store a key: each learns the others'."""
        monkeypatch.setattr(keys, "RELIST_SECONDS", 0.0)
        first = await uploads(driver)
        (path,) = await driver.list(UPLOAD_KEYS)
        key = await driver.get_content(path)
        await driver.delete(path)
        second = await uploads(driver)  # found no key: stored its own
        await driver.put_content(path, key)
        upload_id = first.start(NAME)
        assert await second.size(NAME, upload_id, fresh=True) == 0

    async def test_a_session_distribution_opened_is_continued(self, driver: StorageDriver) -> None:
        """A UUID names a session opened in storage by Distribution or an older Cargobay."""
        upload_id = str(uuid.uuid4())
        await driver.put_content(
            layout.upload_started_at(NAME, upload_id), b"2026-12-07T10:00:00.000000000Z"
        )
        store = await uploads(driver)
        with pytest.raises(BlobUploadUnknown):
            await store.append(NAME, upload_id, body(b"x"), fresh=True)  # never ours to mark
        await store.append(NAME, upload_id, body(CONTENT[:10]), start=0)
        blob = await (await uploads(driver)).finish(NAME, upload_id, DIGEST, body(CONTENT[10:]))
        assert await driver.get_content(layout.blob_data(blob.digest)) == CONTENT
        assert await files_below(driver, layout.repository(NAME)) == [
            layout.layer_link(NAME, DIGEST)
        ]
        with pytest.raises(BlobUploadUnknown):
            await store.size(NAME, str(uuid.uuid4()))
