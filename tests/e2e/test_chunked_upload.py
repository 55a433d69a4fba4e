"""A chunked blob upload and ranged blob reads, over real HTTP against the live process."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.checks import ChunkedUpload
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import ServerProcess

pytestmark = pytest.mark.e2e

REPOSITORY = "e2e/chunked"
#: 600 KiB that gzip cannot shrink, cut into uneven chunks (one of a single byte).
BLOB = random.Random(7).randbytes(600 * 1024)
DIGEST = sha256_digest(BLOB)
CHUNKS = [BLOB[:65536], BLOB[65536:65537], BLOB[65537:400_000], BLOB[400_000:550_000]]
LAST = BLOB[550_000:]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def push_chunked(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    upload = await ChunkedUpload.start(http, server, REPOSITORY)
    for chunk in CHUNKS:
        assert (await upload.patch(chunk)).status == 202
    assert (await upload.finish(DIGEST, LAST)).status == 201


class TestChunkedUpload:
    async def test_post_patches_put_store_the_blob_under_its_digest(
        self, cargobay: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        upload = await ChunkedUpload.start(http, cargobay, REPOSITORY)
        for chunk in CHUNKS:
            response = await upload.patch(chunk)
            assert response.status == 202
            # The spec's inclusive range of what the registry holds so far.
            assert response.headers["Range"] == f"0-{upload.offset - 1}"
            assert response.headers["Docker-Upload-UUID"]

        progress = await upload.status()
        assert progress.status == 204
        assert progress.headers["Range"] == f"0-{len(BLOB) - len(LAST) - 1}"

        done = await upload.finish(DIGEST, LAST)
        assert done.status == 201
        assert done.headers["Docker-Content-Digest"] == DIGEST
        assert done.headers["Location"].endswith(f"/v2/{REPOSITORY}/blobs/{DIGEST}")

        async with http.get(f"{cargobay.url}/v2/{REPOSITORY}/blobs/{DIGEST}") as response:
            assert response.status == 200
            assert await response.read() == BLOB
            assert response.headers["Docker-Content-Digest"] == DIGEST

    async def test_head_reports_the_blob_size(
        self, cargobay: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        await push_chunked(http, cargobay)

        async with http.head(f"{cargobay.url}/v2/{REPOSITORY}/blobs/{DIGEST}") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(BLOB))
            assert response.headers["Docker-Content-Digest"] == DIGEST

    async def test_out_of_order_chunk_is_refused_with_416_and_the_upload_goes_on(
        self, cargobay: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        """A chunk that does not start where the upload ends is refused (spec: 416) and
        changes nothing: the client can resume from the announced `Range`."""
        upload = await ChunkedUpload.start(http, cargobay, REPOSITORY)
        assert (await upload.patch(CHUNKS[0])).status == 202

        skipped = await upload.patch(CHUNKS[2], start=len(CHUNKS[0]) + len(CHUNKS[1]))
        assert skipped.status == 416
        progress = await upload.status()
        assert progress.headers["Range"] == f"0-{len(CHUNKS[0]) - 1}"

        for chunk in CHUNKS[1:]:
            assert (await upload.patch(chunk)).status == 202
        assert (await upload.finish(DIGEST, LAST)).status == 201

    async def test_wrong_digest_is_refused_and_stores_nothing(
        self, cargobay: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        upload = await ChunkedUpload.start(http, cargobay, REPOSITORY)
        for chunk in CHUNKS:
            assert (await upload.patch(chunk)).status == 202
        wrong = sha256_digest(b"something else")

        response = await upload.finish(wrong, LAST)

        assert response.status == 400
        for digest in (wrong, DIGEST):
            url = f"{cargobay.url}/v2/{REPOSITORY}/blobs/{digest}"
            async with http.head(url) as head:
                assert head.status == 404


class TestRangedBlobGet:
    @pytest.mark.parametrize(
        ("range_header", "start", "stop"),
        [
            ("bytes=0-0", 0, 1),
            ("bytes=100-65635", 100, 65636),
            ("bytes=65530-400009", 65530, 400_010),
            ("bytes=614000-", 614_000, len(BLOB)),
            ("bytes=-16", len(BLOB) - 16, len(BLOB)),
        ],
    )
    async def test_range_request_returns_206_with_exactly_those_bytes(
        self,
        cargobay: ServerProcess,
        http: aiohttp.ClientSession,
        range_header: str,
        start: int,
        stop: int,
    ) -> None:
        await push_chunked(http, cargobay)

        url = f"{cargobay.url}/v2/{REPOSITORY}/blobs/{DIGEST}"
        async with http.get(url, headers={"Range": range_header}) as response:
            body = await response.read()
        assert response.status == 206
        assert body == BLOB[start:stop]
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(BLOB)}"
        assert response.headers["Content-Length"] == str(stop - start)

    async def test_range_past_the_end_is_416(
        self, cargobay: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        await push_chunked(http, cargobay)

        url = f"{cargobay.url}/v2/{REPOSITORY}/blobs/{DIGEST}"
        async with http.get(url, headers={"Range": f"bytes={len(BLOB)}-"}) as response:
            assert response.status == 416
