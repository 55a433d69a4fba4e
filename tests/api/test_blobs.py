"""Blob reads and deletes: headers, ranges, errors."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from registry.config import Config, StorageConfig
from tests.api.conftest import ClientFactory
from tests.api.oci import digest_of, error_codes, push_blob

DATA = bytes(range(256)) * 40  # 10,240 bytes


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

    async def test_range_beyond_the_end_returns_416(self, client: TestClient) -> None:
        digest = await push_blob(client, "lib/blob", DATA)
        response = await client.get(
            f"/v2/lib/blob/blobs/{digest}", headers={"Range": "bytes=20000-20100"}
        )
        assert response.status == 416

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

    async def test_unsupported_algorithm_returns_unsupported(self, client: TestClient) -> None:
        response = await client.get("/v2/lib/blob/blobs/md5:d41d8cd98f00b204e9800998ecf8427e")
        assert response.status in (400, 405)
        assert await error_codes(response) in (["UNSUPPORTED"], ["DIGEST_INVALID"])

    async def test_invalid_repository_name_returns_name_invalid(self, client: TestClient) -> None:
        digest = digest_of(b"x")
        for name in ["UPPER/case", "a/../b", "-lead", "a//b", "trail-"]:
            response = await client.get(f"/v2/{name}/blobs/{digest}")
            assert response.status in (400, 404), name
            if response.status == 400:
                assert await error_codes(response) == ["NAME_INVALID"], name


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
