"""`BlobSizeLimit`: upload and staged blob writers stop at the limit; the rest passes through."""

from __future__ import annotations

import pytest

from registry import layout
from registry.drivers.base import StorageDriver
from registry.drivers.sizelimit import BlobSizeLimit
from registry.errors import PayloadTooLarge


class TestBlobSizeLimit:
    async def test_upload_writer_refuses_the_write_that_would_pass_the_limit(
        self, driver: StorageDriver
    ) -> None:
        limited = BlobSizeLimit(driver, max_bytes=10)
        writer = await limited.writer(layout.upload_data("a", "u1"))
        await writer.write(b"123456")
        with pytest.raises(PayloadTooLarge):
            await writer.write(b"78901")
        assert writer.size == 6
        await writer.close()

        resumed = await limited.writer(layout.upload_data("a", "u1"), append=True)
        await resumed.write(b"7890")
        with pytest.raises(PayloadTooLarge):
            await resumed.write(b"x")
        await resumed.cancel()

    async def test_staged_blob_writer_refuses_the_write_that_would_pass_the_limit(
        self, driver: StorageDriver
    ) -> None:
        limited = BlobSizeLimit(driver, max_bytes=10)
        path = "/docker/registry/v2/blobs/sha256/ab/abc/data"
        writer = await limited.staged_writer(path)
        await writer.write(b"1234567890")
        with pytest.raises(PayloadTooLarge):
            await writer.write(b"x")
        await writer.cancel()
        assert [f async for f in limited.walk("/docker/registry/v2/blobs")] == []

    async def test_other_paths_are_not_limited(self, driver: StorageDriver) -> None:
        limited = BlobSizeLimit(driver, max_bytes=10)
        writer = await limited.writer("/docker/registry/v2/blobs/tmp/data")
        await writer.write(b"x" * 100)
        await writer.commit()
        await limited.put_content(layout.upload_started_at("a", "u1"), b"y" * 100)
        assert len(await limited.get_content("/docker/registry/v2/blobs/tmp/data")) == 100
        assert limited.name == driver.name
