"""Size limits: manifests, blobs (announced or not) and headers are refused past their bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, ConfigError, LimitsConfig
from registry.drivers.inmemory import InMemoryDriver
from tests.api.oci import digest_of
from tests.auth.conftest import Serve

LIMITS = Config(limits=LimitsConfig(max_manifest_bytes=1000, max_blob_bytes=1000))


def error_code(body: dict[str, list[dict[str, str]]]) -> str:
    return body["errors"][0]["code"]


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


class TestManifestLimit:
    async def test_manifest_announced_over_the_limit_is_413(self, serve: Serve) -> None:
        client = await serve(LIMITS)
        response = await client.put("/v2/a/manifests/latest", data=b"{" + b" " * 1500 + b"}")
        assert response.status == 413
        assert error_code(await response.json()) == "SIZE_INVALID"

    def test_limit_cannot_exceed_what_the_parser_accepts(self) -> None:
        with pytest.raises(ConfigError, match="max_manifest_bytes"):
            LimitsConfig(max_manifest_bytes=64 * 1024 * 1024)


class TestBlobLimit:
    async def test_monolithic_upload_over_the_limit_is_413(self, serve: Serve) -> None:
        client = await serve(LIMITS)
        data = b"x" * 1001
        response = await client.post(f"/v2/a/blobs/uploads/?digest={digest_of(data)}", data=data)
        assert response.status == 413
        assert (await client.head(f"/v2/a/blobs/{digest_of(data)}")).status == 404

    async def test_blob_at_the_limit_is_accepted(self, serve: Serve) -> None:
        client = await serve(LIMITS)
        data = b"x" * 1000
        response = await client.post(f"/v2/a/blobs/uploads/?digest={digest_of(data)}", data=data)
        assert response.status == 201

    async def test_chunk_whose_range_ends_past_the_limit_is_refused_unread(
        self, serve: Serve
    ) -> None:
        client = await serve(LIMITS)
        location = (await client.post("/v2/a/blobs/uploads/")).headers["Location"]
        response = await client.patch(
            location, data=b"x" * 10, headers={"Content-Range": "995-1004"}
        )
        assert response.status == 413

    async def test_chunks_adding_up_past_the_limit_stop_at_the_limit(self, serve: Serve) -> None:
        client = await serve(LIMITS)
        location = (await client.post("/v2/a/blobs/uploads/")).headers["Location"]
        first = await client.patch(location, data=b"x" * 600)
        assert first.status == 202
        second = await client.patch(location, data=b"y" * 600)
        assert second.status == 413
        status = await client.get(location)
        assert status.headers["Range"] == "0-599"

    async def test_body_without_a_length_is_stopped_as_it_streams(self, serve: Serve) -> None:
        client = await serve(LIMITS)
        data = b"z" * 1500
        response = await client.post(
            f"/v2/a/blobs/uploads/?digest={digest_of(data)}", data=chunks(data[:700], data[700:])
        )
        assert response.status == 413
        assert (await client.head(f"/v2/a/blobs/{digest_of(data)}")).status == 404

    async def test_no_limit_by_default(self, serve: Serve) -> None:
        client = await serve(Config())
        data = b"x" * 100_000
        response = await client.post(f"/v2/a/blobs/uploads/?digest={digest_of(data)}", data=data)
        assert response.status == 201


class TestHeaderLimit:
    async def test_header_longer_than_the_limit_is_refused_before_any_handler(self) -> None:
        limits = LimitsConfig(max_header_bytes=1024)
        server = TestServer(create_app(replace(Config(), limits=limits), InMemoryDriver()))
        await server.start_server(**server_options(limits))
        async with TestClient(server) as client:
            response = await client.get("/v2/", headers={"X-Padding": "p" * 2000})
            assert response.status in (400, 431)
            assert (await client.get("/v2/", headers={"X-Padding": "p" * 500})).status == 200
