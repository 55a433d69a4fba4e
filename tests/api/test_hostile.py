"""Hostile input, sent as an attacker would: raw bytes on the socket where a client would refuse.

What every test holds the registry to: no 500, nothing written where it
should not be (on the filesystem driver, nothing outside its root), and other
clients served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient

from registry.drivers.base import StorageDriver
from registry.manifest import MAX_MANIFEST_SIZE
from tests.api.oci import OCI_MANIFEST, digest_of, push_blob, push_image

#: How long a test waits for an answer that must come.
ANSWER_TIMEOUT = 5.0


async def raw_request(client: TestClient, request: bytes) -> int:
    """Send `request` bytes as they are; the status code of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
        return int(line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def stored_paths(storage: StorageDriver) -> list[str]:
    return [info.path async for info in storage.walk("/docker")]


def assert_nothing_outside_the_root(storage: StorageDriver, tmp_path: Path) -> None:
    """On the filesystem driver, the temporary directory holds the root and nothing else."""
    if storage.name == "filesystem":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


class TestPathTraversal:
    @pytest.mark.parametrize(
        "path",
        [
            "/v2/../../../etc/passwd/tags/list",
            "/v2/a/%2e%2e/%2e%2e/%2e%2e/x/manifests/latest",
            "/v2/..%2f..%2f..%2fx/tags/list",
            "/v2/%2e%2e/blobs/uploads/",
            "/v2/a/manifests/..%2f..%2f..%2fblobs",
            "/v2/a/manifests/sha256:..%2f..%2f",
            "/v2/a/blobs/sha256:..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/v2/a/blobs/sha256:" + "." * 64,
            "/v2/a/blobs/sha256:" + "A" * 64,
            "/v2/a/blobs/uploads/..%2f..%2f_layers",
            "/v2/a/blobs/uploads/../../../../tmp",
            "/v2/a%00b/tags/list",
            "/v2/a/blobs/uploads/%ff%fe",
            "/v2/%ff/manifests/latest",
            "/v2/a/referrers/sha256:%2e%2e",
        ],
    )
    @pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "POST"])
    async def test_path_tricks_never_escape_or_fail_the_server(
        self, client: TestClient, storage: StorageDriver, tmp_path: Path, path: str, method: str
    ) -> None:
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            "Content-Length: 5\r\n\r\nhello"
        ).encode()
        status = await raw_request(client, request)
        assert 400 <= status < 500, status
        assert await stored_paths(storage) == []
        assert_nothing_outside_the_root(storage, tmp_path)


class TestUploadIds:
    async def test_another_repositorys_upload_id_reaches_nothing(self, client: TestClient) -> None:
        location = (await client.post("/v2/victim/app/blobs/uploads/")).headers["Location"]
        upload_id = location.rsplit("/", 1)[1]
        await client.patch(location, data=b"victim bytes ")
        stolen = f"/v2/attacker/app/blobs/uploads/{upload_id}"
        data = b"victim bytes attacker bytes"

        assert (await client.patch(stolen, data=b"attacker bytes")).status == 404
        assert (await client.get(stolen)).status == 404
        assert (await client.put(f"{stolen}?digest={digest_of(data)}")).status == 404
        assert (await client.delete(stolen)).status == 404

        finished = await client.put(f"{location}?digest={digest_of(b'victim bytes ')}")
        assert finished.status == 201
        digest = digest_of(b"victim bytes ")
        assert (await client.head(f"/v2/attacker/app/blobs/{digest}")).status == 404
        assert (await client.head(f"/v2/victim/app/blobs/{digest}")).status == 200


class TestManifests:
    async def test_manifest_announced_over_the_limit_is_refused_unread(
        self, client: TestClient
    ) -> None:
        request = (
            f"PUT /v2/a/manifests/latest HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {MAX_MANIFEST_SIZE + 1}\r\n\r\n{{"
        ).encode()
        assert await raw_request(client, request) == 413

    async def test_chunked_manifest_over_the_limit_is_413(self, client: TestClient) -> None:
        async def endless() -> object:
            for _ in range(MAX_MANIFEST_SIZE // 65536 + 2):
                yield b" " * 65536

        response = await client.put(
            "/v2/a/manifests/latest", data=endless(), headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 413

    @pytest.mark.parametrize(
        "body",
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"schemaVersion": 2, "annotations": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
            b'{"schemaVersion": 2, "mediaType": "\xff\xfe"}',
            b"\xef\xbb\xbf{}",
            b'{"schemaVersion": 2, "config": ',
            b"\x00" * 1000,
            b'{"schemaVersion": 2}' + b"garbage",
            b'{"schemaVersion": 1e999999}',
            b'{"schemaVersion": 2, "layers": [' + b'{"size": -1},' * 10_000 + b"{}]}",
        ],
        ids=[
            "deep-array",
            "deep-object",
            "broken-utf8",
            "bom",
            "truncated",
            "nul-bytes",
            "trailing-garbage",
            "huge-number",
            "many-bad-layers",
        ],
    )
    async def test_malformed_manifest_is_manifest_invalid_and_stores_nothing(
        self, client: TestClient, storage: StorageDriver, body: bytes
    ) -> None:
        response = await client.put(
            "/v2/a/manifests/latest", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 400
        assert (await response.json())["errors"][0]["code"] == "MANIFEST_INVALID"
        assert await stored_paths(storage) == []

    async def test_large_manifest_arriving_in_many_reads_is_stored(
        self, client: TestClient
    ) -> None:
        config = await push_blob(client, "a", b"{}")
        layer = {"mediaType": "application/octet-stream", "digest": config, "size": 2}
        body = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config,
                    "size": 2,
                },
                "layers": [layer] * 20_000,
            }
        )
        response = await client.put(
            "/v2/a/manifests/big", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 201


class TestLyingBodies:
    async def test_content_length_longer_than_the_body_stores_nothing(
        self, client: TestClient
    ) -> None:
        """The client announces more than it sends, then hangs up."""
        data = b"short body"
        _, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            f"POST /v2/a/blobs/uploads/?digest={digest_of(data)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(data) + 1000}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)
        assert (await client.head(f"/v2/a/blobs/{digest_of(data)}")).status == 404
        assert (await client.get("/v2/")).status == 200

    async def test_content_length_shorter_than_the_body_keeps_the_rest_out(
        self, client: TestClient
    ) -> None:
        data = b"the whole body"
        request = (
            f"POST /v2/a/blobs/uploads/?digest={digest_of(data)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: 5\r\n\r\n"
        ).encode() + data
        status = await raw_request(client, request)
        assert status == 400  # DIGEST_INVALID: five bytes do not hash to the digest
        assert (await client.head(f"/v2/a/blobs/{digest_of(data)}")).status == 404

    async def test_negative_and_non_numeric_lengths_are_refused(self, client: TestClient) -> None:
        for length in ("-1", "abc", "1, 2", "99999999999999999999999"):
            request = (
                f"PUT /v2/a/manifests/latest HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {length}\r\n\r\n{{}}"
            ).encode()
            assert await raw_request(client, request) == 400, length

    async def test_client_stopping_mid_body_stalls_only_itself(
        self, client: TestClient, storage: StorageDriver
    ) -> None:
        location = (await client.post("/v2/a/blobs/uploads/")).headers["Location"]
        _, writer = await asyncio.open_connection(client.host, client.port)
        try:
            writer.write(
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n".encode()
                + b"x" * 100_000
            )
            await writer.drain()
            # The stalled upload holds its session; everyone else is served.
            image = await asyncio.wait_for(push_image(client, "b"), ANSWER_TIMEOUT)
            assert (await client.get(f"/v2/b/manifests/{image.digest}")).status == 200
            assert (await asyncio.wait_for(client.get("/v2/"), ANSWER_TIMEOUT)).status == 200
        finally:
            writer.close()
        # Once the client is gone, the session answers again and holds at most what arrived.
        for _ in range(100):
            status = await client.get(location)
            if status.status == 204:
                break
            await asyncio.sleep(0.05)
        assert status.status == 204
        received = int(status.headers["Range"].split("-")[1]) + 1
        assert received <= 100_000
        digest = digest_of(b"x" * 1048576)
        assert (await client.put(f"{location}?digest={digest}")).status == 400
        assert (await client.head(f"/v2/a/blobs/{digest}")).status == 404

    async def test_garbage_instead_of_http_is_answered_400(self, client: TestClient) -> None:
        assert (
            await raw_request(client, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10) == 400
        )
        assert await raw_request(client, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n") == 400
        assert await raw_request(client, get("/v2/")) == 200
