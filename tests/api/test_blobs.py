"""Blob reads and deletes: headers, ranges, errors."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import Config, StorageConfig
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.drivers.filesystem import FilesystemDriver
from registry.drivers.inmemory import InMemoryDriver
from registry.drivers.wrapper import DriverWrapper
from registry.errors import StorageError
from registry.layout import blob_data
from tests.api.conftest import ClientFactory
from tests.api.oci import digest_of, error_codes, push_blob

T = TypeVar("T")

DATA = bytes(range(256)) * 40  # 10,240 bytes
# Larger than loopback's socket buffers: a download waits on a full socket.
LARGE = os.urandom(20 * 1024 * 1024)


class TestGetBlob:
    async def test_get_returns_bytes_with_digest_and_length(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.get(f"/v2/lib/blob/blobs/{digest}")
        assert response.status == 200
        assert await response.read() == DATA
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["Content-Length"] == str(len(DATA))
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"

    async def test_head_returns_headers_without_body(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.head(f"/v2/lib/blob/blobs/{digest}")
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(DATA))
        assert response.headers["Docker-Content-Digest"] == digest
        assert await response.read() == b""

    async def test_range_request_returns_206_with_the_slice(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.get(
            f"/v2/lib/blob/blobs/{digest}", headers={"Range": "bytes=100-299"}
        )
        assert response.status == 206
        assert await response.read() == DATA[100:300]
        assert response.headers["Content-Range"] == f"bytes 100-299/{len(DATA)}"

    async def test_open_ended_range_returns_the_rest(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.get(
            f"/v2/lib/blob/blobs/{digest}", headers={"Range": "bytes=10000-"}
        )
        assert response.status == 206
        assert await response.read() == DATA[10000:]

    async def test_range_beyond_the_end_returns_416_with_the_blob_size(
        self, client: TestClient
    ) -> None:
        """RFC 9110: 416 says the size in `Content-Range: bytes */<size>`; no upload code."""
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.get(
            f"/v2/lib/blob/blobs/{digest}", headers={"Range": "bytes=20000-20100"}
        )
        assert response.status == 416
        assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
        assert "Range" not in response.headers
        assert "BLOB_UPLOAD_INVALID" not in await error_codes(response)

    async def test_unknown_blob_returns_blob_unknown(self, client: TestClient) -> None:
        response = await client.get(f"/v2/lib/blob/blobs/{digest_of(b'missing')}")
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UNKNOWN"]

    async def test_blob_of_another_repository_is_not_visible(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/one", DATA)
        response = await client.get(f"/v2/lib/two/blobs/{digest}")
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UNKNOWN"]

    async def test_malformed_digest_returns_digest_invalid(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/blob/blobs/sha256:nothex")
        assert response.status == 400
        assert await error_codes(response) == ["DIGEST_INVALID"]

    async def test_unsupported_algorithm_returns_digest_invalid(self, client: TestClient) -> None:
        """Not 405 UNSUPPORTED: clients read that as "this registry takes no pushes"."""
        for digest in ["md5:d41d8cd98f00b204e9800998ecf8427e", "sha384:" + "a" * 96, "a:b"]:
            for method in ["GET", "HEAD", "DELETE"]:
                response = await client.request(method, f"/v2/lib/blob/blobs/{digest}")
                assert response.status == 400, (method, digest)
                if method != "HEAD":
                    assert await error_codes(response) == ["DIGEST_INVALID"], (method, digest)

    async def test_invalid_repository_name_returns_name_invalid(self, client: TestClient) -> None:
        digest = digest_of(b"x")
        for name in ["UPPER/case", "a/../b", "-lead", "a//b", "trail-"]:
            response = await client.get(f"/v2/{name}/blobs/{digest}")
            assert response.status in (400, 404), name
            if response.status == 400:
                assert await error_codes(response) == ["NAME_INVALID"], name


class _CountingStats(DriverWrapper):
    """Counts the size checks of blob content that reach storage."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self.stats: Counter[str] = Counter()

    async def observe(self, operation: str, path: str, call: Awaitable[T]) -> T:
        if operation in ("stat", "stat_file") and path.endswith("/data"):
            self.stats[path] += 1
        return await call


class TestBlobReadsAskStorage:
    async def test_gets_trust_a_known_size_heads_ask_storage_once_a_second(self) -> None:
        """A pull storm's GETs cost storage only the reads; a HEAD is confirmed within 1 s."""
        driver = _CountingStats(InMemoryDriver())
        client = TestClient(TestServer(create_app(Config(), driver)))
        await client.start_server()
        try:
            digest = await push_blob(client, "lib/blob", DATA)
            path = blob_data(Digest.parse(digest))
            await asyncio.sleep(1.1)  # past the push's own confirmation
            for _ in range(3):
                response = await client.get(f"/v2/lib/blob/blobs/{digest}")
                assert await response.read() == DATA
            assert driver.stats[path] == 0
            for _ in range(3):
                assert (await client.head(f"/v2/lib/blob/blobs/{digest}")).status == 200
            assert driver.stats[path] == 1
        finally:
            await client.close()


class TestLargeBlobDownloads:
    """What a pull of a real layer relies on, whichever way the bytes leave."""

    async def test_slow_reader_gets_every_byte(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/big", LARGE)
        received = bytearray()
        async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
            assert response.status == 200
            async for piece in response.content.iter_chunked(1024 * 1024):
                received += piece
                await asyncio.sleep(0.002)
        assert received == LARGE

    async def test_range_in_the_middle_returns_only_the_slice(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/big", LARGE)
        headers = {"Range": "bytes=1000000-8999999"}
        async with client.get(f"/v2/lib/big/blobs/{digest}", headers=headers) as response:
            assert response.status == 206
            assert await response.read() == LARGE[1_000_000:9_000_000]

    async def test_one_connection_serves_downloads_one_after_another(
        self, client: TestClient
    ) -> None:
        digest = await push_blob(client, "lib/big", LARGE)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(3):
                async with session.get(client.make_url(f"/v2/lib/big/blobs/{digest}")) as r:
                    assert await r.read() == LARGE

    async def test_clients_leaving_mid_body_leave_the_registry_serving(
        self, client: TestClient
    ) -> None:
        digest = await push_blob(client, "lib/big", LARGE)
        url = client.make_url(f"/v2/lib/big/blobs/{digest}")
        for _ in range(5):
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                await response.content.readexactly(1024 * 1024)
        async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
            assert await response.read() == LARGE

    async def test_access_log_counts_the_bytes_sent(
        self, storage: StorageDriver, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="test.access")
        server = TestServer(create_app(Config(), storage))
        await server.start_server(access_log=logging.getLogger("test.access"))
        async with TestClient(server) as client:
            digest = await push_blob(client, "lib/big", LARGE)
            async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
                assert await response.read() == LARGE
        [line] = [
            r.getMessage() for r in caplog.records if "GET /v2/lib/big/blobs" in r.getMessage()
        ]
        logged_size = int(line.split('" 200 ')[1].split()[0])
        assert len(LARGE) < logged_size < len(LARGE) + 1024


class _FailingMidStream(InMemoryDriver):
    """Storage whose reads of blob data fail after the first piece."""

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        inner = await super()._reader(path, offset, length)
        if not path.endswith("/data"):
            return inner

        async def failing() -> AsyncGenerator[bytes, None]:
            yield await anext(inner)
            raise StorageError(self.name, path, "connection to storage lost")

        return failing()


class _ShortReads(InMemoryDriver):
    """Storage whose reads of blob data end after the first piece, without an error."""

    async def _reader(
        self, path: str, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        inner = await super()._reader(path, offset, length)
        if not path.endswith("/data"):
            return inner

        async def short() -> AsyncGenerator[bytes, None]:
            yield await anext(inner)

        return short()


class TestDownloadFailingPartWay:
    """A download that storage fails after its headers must not look complete."""

    async def test_storage_failing_mid_stream_cuts_the_download_off(self) -> None:
        async with TestClient(TestServer(create_app(Config(), _FailingMidStream()))) as client:
            digest = await push_blob(client, "lib/big", LARGE)
            async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            assert (await client.head(f"/v2/lib/big/blobs/{digest}")).status == 200

    async def test_storage_ending_early_cuts_the_download_off(self) -> None:
        async with TestClient(TestServer(create_app(Config(), _ShortReads()))) as client:
            digest = await push_blob(client, "lib/big", LARGE)
            async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()

    async def test_download_of_a_short_file_is_cut_off_not_padded(self, tmp_path: Path) -> None:
        """A file shorter than its blob (a damaged disk) must not pass as the whole blob."""
        server = TestServer(create_app(Config(), FilesystemDriver(tmp_path)))
        async with TestClient(server) as client:
            digest = await push_blob(client, "lib/big", LARGE)
            [data] = (tmp_path / "docker/registry/v2/blobs/sha256").glob(f"*/{digest[7:]}/data")
            os.truncate(data, len(LARGE) // 2)
            async with client.get(f"/v2/lib/big/blobs/{digest}") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            async with client.get(
                f"/v2/lib/big/blobs/{digest}", headers={"Range": "bytes=0-9"}
            ) as r:
                assert await r.read() == LARGE[:10]


class TestDeleteBlob:
    async def test_delete_returns_202_and_blob_is_gone(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.delete(f"/v2/lib/blob/blobs/{digest}")
        assert response.status == 202
        assert (await client.head(f"/v2/lib/blob/blobs/{digest}")).status == 404

    async def test_delete_unknown_blob_returns_blob_unknown(self, client: TestClient) -> None:
        response = await client.delete(f"/v2/lib/blob/blobs/{digest_of(b'never')}")
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UNKNOWN"]

    async def test_delete_when_disabled_returns_405_unsupported(
        self, make_client: ClientFactory
    ) -> None:
        client = await make_client(Config(storage=StorageConfig(delete=False)))
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.delete(f"/v2/lib/blob/blobs/{digest}")
        assert response.status == 405
        assert await error_codes(response) == ["UNSUPPORTED"]
        assert (await client.head(f"/v2/lib/blob/blobs/{digest}")).status == 200
