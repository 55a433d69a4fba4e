"""Size limits: manifests, blobs (announced or not) and headers are refused past their bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, ConfigError, HttpConfig, LimitsConfig
from registry.drivers.inmemory import InMemoryDriver
from tests.api.oci import OCI_MANIFEST, digest_of
from tests.auth.conftest import Serve
from tests.rawhttp import RawRequest

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


def limits(**changes: Any) -> Config:
    """A configuration with `[limits]` keys changed, trusting X-Forwarded-For from loopback
    so that tests can speak as several clients."""
    return Config(http=HttpConfig(trusted_proxies=("127.0.0.1",)), limits=LimitsConfig(**changes))


async def open_session(client: TestClient) -> str:
    response = await client.post("/v2/a/blobs/uploads/")
    assert response.status == 202
    return response.headers["Location"]


class TestBodyIdleTimeout:
    async def test_stalled_patch_is_answered_408_closed_and_keeps_what_arrived(
        self, serve: Serve
    ) -> None:
        client = await serve(limits(body_idle_timeout_seconds=0.5))
        location = await open_session(client)
        stalled = await RawRequest.open(client.port, "PATCH", location, 1000, b"x" * 10)
        try:
            status, _, body = await stalled.answer()
            closed = await stalled.closed_by_server()
        finally:
            await stalled.close()
        assert status == 408
        assert json.loads(body)["errors"][0]["code"] == "REQUEST_TIMEOUT"
        assert closed, "a stalled connection must be closed, not drained"
        progress = await client.get(location)
        assert progress.headers["Range"] == "0-9"
        resumed = await client.patch(location, data=b"y" * 5, headers={"Content-Range": "10-14"})
        assert resumed.status == 202
        assert resumed.headers["Range"] == "0-14"

    async def test_stalled_manifest_put_is_answered_408(self, serve: Serve) -> None:
        client = await serve(limits(body_idle_timeout_seconds=0.5))
        stalled = await RawRequest.open(
            client.port, "PUT", "/v2/a/manifests/v1", 500, b"{", **{"Content-Type": OCI_MANIFEST}
        )
        try:
            status, _, _ = await stalled.answer()
            closed = await stalled.closed_by_server()
        finally:
            await stalled.close()
        assert status == 408
        assert closed

    async def test_stalled_monolithic_upload_is_answered_408_and_stores_nothing(
        self, serve: Serve
    ) -> None:
        client = await serve(limits(body_idle_timeout_seconds=0.5))
        digest = digest_of(b"x" * 100)
        stalled = await RawRequest.open(
            client.port, "POST", f"/v2/a/blobs/uploads/?digest={digest}", 100, b"x" * 10
        )
        try:
            status, _, _ = await stalled.answer()
        finally:
            await stalled.close()
        assert status == 408
        assert (await client.head(f"/v2/a/blobs/{digest}")).status == 404

    def test_default_lets_a_slow_but_moving_client_finish(self) -> None:
        """A client trickling 1 KiB/s never goes a second without a byte."""
        assert LimitsConfig().body_idle_timeout_seconds >= 30


class TestConcurrentUploads:
    async def test_upload_over_the_per_client_bound_is_429_with_retry_after(
        self, serve: Serve
    ) -> None:
        client = await serve(limits(max_concurrent_uploads_per_client=2))
        a = {"X-Forwarded-For": "10.0.0.1"}
        held = [
            await RawRequest.open(client.port, "PATCH", await open_session(client), 100, b"x", **a)
            for _ in range(2)
        ]
        try:
            location = await open_session(client)
            refused = await client.patch(location, data=b"z", headers=a)
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert error_code(await refused.json()) == "TOOMANYREQUESTS"
            other = await client.patch(location, data=b"z", headers={"X-Forwarded-For": "10.0.0.2"})
            assert other.status == 202
            assert (await client.get(location, headers=a)).status == 204  # not an upload body
        finally:
            for request in held:
                await request.close()
        await asyncio.sleep(0.1)  # the server sees the closed connections
        assert (await client.patch(location, data=b"z", headers=a)).status == 202

    async def test_upload_over_the_total_bound_is_429_whoever_sends_it(self, serve: Serve) -> None:
        client = await serve(limits(max_concurrent_uploads=2))
        held = [
            await RawRequest.open(
                client.port,
                "PATCH",
                await open_session(client),
                100,
                b"x",
                **{"X-Forwarded-For": ip},
            )
            for ip in ["10.0.0.1", "10.0.0.2"]
        ]
        try:
            digest = digest_of(b"z")
            refused = await client.post(
                f"/v2/a/blobs/uploads/?digest={digest}",
                data=b"z",
                headers={"X-Forwarded-For": "10.0.0.3"},
            )
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert (await client.get("/v2/")).status == 200
        finally:
            for request in held:
                await request.close()

    def test_bounds_are_on_by_default(self) -> None:
        defaults = LimitsConfig()
        assert defaults.max_concurrent_uploads > 0
        assert defaults.max_concurrent_uploads_per_client > 0
