"""Upload sessions in storage: what a push leaves behind, and a final PUT after a crash.

Run on every driver.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from registry import layout
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.services.blobs import BlobStore
from registry.services.index import TagIndex
from registry.services.uploads import UploadStore

NAME = "team/app"
CONTENT = b"layer bytes " * 1000
DIGEST = Digest("sha256", hashlib.sha256(CONTENT).hexdigest())


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def uploads(driver: StorageDriver) -> UploadStore:
    """An upload store as a fresh process has it: nothing of any session in memory."""
    return UploadStore(driver, BlobStore(driver, TagIndex(), delete_enabled=True))


async def files_below(driver: StorageDriver, path: str) -> list[str]:
    return [info.path async for info in driver.walk(path)]


class TestSessionsInStorage:
    async def test_a_post_then_a_put_with_the_whole_blob_leaves_no_session_behind(
        self, driver: StorageDriver
    ) -> None:
        store = uploads(driver)
        upload_id = await store.start(NAME)
        assert await store.size(NAME, upload_id) == 0
        blob = await store.finish(NAME, upload_id, DIGEST, body(CONTENT[:5000], CONTENT[5000:]))
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.repository(NAME)) == [
            layout.layer_link(NAME, DIGEST)
        ]

    async def test_a_session_finished_by_another_process_after_a_chunk_publishes_the_blob(
        self, driver: StorageDriver
    ) -> None:
        upload_id = await uploads(driver).start(NAME)
        await uploads(driver).append(NAME, upload_id, body(CONTENT[:7000]), start=0)
        blob = await uploads(driver).finish(NAME, upload_id, DIGEST, body(CONTENT[7000:]))
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.upload_dir(NAME, upload_id)) == []

    async def test_a_session_cancelled_before_any_chunk_leaves_nothing_behind(
        self, driver: StorageDriver
    ) -> None:
        store = uploads(driver)
        upload_id = await store.start(NAME)
        await store.cancel(NAME, upload_id)
        assert await files_below(driver, layout.repository(NAME)) == []

    async def test_content_committed_by_a_process_that_died_is_published_by_the_final_put(
        self, driver: StorageDriver
    ) -> None:
        """The process committed the session's content, then died before publishing it
        under its digest: what the client sends again, the final PUT, finishes the push."""
        upload_id = await uploads(driver).start(NAME)
        await driver.put_content(layout.upload_data(NAME, upload_id), CONTENT)
        blob = await uploads(driver).finish(NAME, upload_id, DIGEST, None)
        assert blob.size == len(CONTENT)
        assert await driver.get_content(layout.blob_data(DIGEST)) == CONTENT
        assert await files_below(driver, layout.upload_dir(NAME, upload_id)) == []
