"""Slow and stalled clients against a live `cargobay serve`: who finishes, who is let go.

`[limits] body_idle_timeout_seconds` ends a request whose body stops arriving;
a body that keeps moving, however slowly, is never cut. Upload requests in
flight are bounded per client, so a client cannot hold every connection.
The clients here are raw sockets, so the bytes on the wire are exactly the
test's: a trickle, a stall, a `Content-Length` the body never reaches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.checks import ChunkedUpload
from tests.e2e.ocilayout import sha256_digest
from tests.e2e.processes import ServerFactory, ServerProcess
from tests.rawhttp import RawRequest

pytestmark = pytest.mark.e2e

REPOSITORY = "e2e/slow"
IDLE = 2.0
PER_CLIENT = 4
LIMITS = (
    f"[limits]\nbody_idle_timeout_seconds = {IDLE}\n"
    f"max_concurrent_uploads_per_client = {PER_CLIENT}\n"
)


@pytest.fixture
def registry(cargobay_factory: ServerFactory) -> ServerProcess:
    return cargobay_factory(extra_config=LIMITS)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def session_path(http: aiohttp.ClientSession, server: ServerProcess) -> str:
    upload = await ChunkedUpload.start(http, server, REPOSITORY)
    return upload.location.path


class TestSlowClients:
    async def test_trickling_client_finishes_though_it_takes_longer_than_the_idle_timeout(
        self, registry: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        """A byte every IDLE/4 seconds for 2.5 x IDLE: slow, but never idle for IDLE."""
        path = await session_path(http, registry)
        data = bytes(range(10))
        request = await RawRequest.open(registry.port, "PATCH", path, len(data))
        started = time.monotonic()
        try:
            for byte in data:
                await request.send(bytes([byte]))
                await asyncio.sleep(IDLE / 4)
            status, headers, _ = await request.answer()
        finally:
            await request.close()
        assert time.monotonic() - started > 2 * IDLE
        assert status == 202
        assert headers["Range"] == f"0-{len(data) - 1}"
        done = await http.put(
            f"{registry.url}{path}?digest={sha256_digest(data)}", data=b"", headers={}
        )
        assert done.status == 201
        blob = await http.get(f"{registry.url}/v2/{REPOSITORY}/blobs/{sha256_digest(data)}")
        assert await blob.read() == data

    async def test_body_shorter_than_its_content_length_is_ended_with_408_and_can_resume(
        self, registry: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        path = await session_path(http, registry)
        request = await RawRequest.open(registry.port, "PATCH", path, 1000)
        started = time.monotonic()
        try:
            await request.send(b"a" * 100)
            status, _, body = await request.answer()
            waited = time.monotonic() - started
            assert await request.closed_by_server()
        finally:
            await request.close()
        assert status == 408
        assert json.loads(body)["errors"][0]["code"] == "REQUEST_TIMEOUT"
        assert IDLE <= waited < IDLE + 10
        progress = await http.get(f"{registry.url}{path}")
        assert progress.headers["Range"] == "0-99"
        data = b"a" * 100 + b"b" * 50
        more = await http.patch(
            f"{registry.url}{path}", data=b"b" * 50, headers={"Content-Range": "100-149"}
        )
        assert more.status == 202
        done = await http.put(f"{registry.url}{path}?digest={sha256_digest(data)}")
        assert done.status == 201

    async def test_stalled_uploads_beyond_the_per_client_bound_get_429_and_all_are_let_go(
        self, registry: ServerProcess, http: aiohttp.ClientSession
    ) -> None:
        """PER_CLIENT stalled PATCHes are held, the next is refused at once; once the idle
        timeout has ended them all, the client may upload again."""
        stalled = [
            await RawRequest.open(
                registry.port, "PATCH", await session_path(http, registry), 10_000
            )
            for _ in range(PER_CLIENT)
        ]
        try:
            for request in stalled:
                await request.send(b"x")
            await asyncio.sleep(0.2)  # every one of them is in its handler
            path = await session_path(http, registry)
            refused = await http.patch(f"{registry.url}{path}", data=b"z")
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["errors"][0]["code"] == "TOOMANYREQUESTS"
            for request in stalled:
                status, _, _ = await request.answer()
                assert status == 408
                assert await request.closed_by_server()
        finally:
            for request in stalled:
                await request.close()
        accepted = await http.patch(f"{registry.url}{path}", data=b"z")
        assert accepted.status == 202
