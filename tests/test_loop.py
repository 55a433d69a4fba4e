"""Zero-copy file sends on the loop `cargobay serve` runs on (the whole suite runs on it)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from registry.loop import Loop
from tests.test_tls import write_certificate

# Larger than loopback's socket buffers, so sends stop on a full socket and wait.
_SIZE = 24 * 1024 * 1024


@dataclass(frozen=True)
class Payload:
    """A file of random bytes, and those bytes."""

    path: Path
    data: bytes


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    path = tmp_path / "payload"
    data = os.urandom(_SIZE)
    path.write_bytes(data)
    return Payload(path, data)


def file_app(payload: Payload) -> web.Application:
    """An aiohttp app answering GET /file with `payload` through FileResponse."""

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(payload.path)

    app = web.Application()
    app.router.add_get("/file", file)
    return app


@pytest.fixture
async def server(payload: Payload) -> AsyncIterator[TestServer]:
    async with TestServer(file_app(payload)) as running:
        yield running


@pytest.fixture
def opened(payload: Payload) -> Iterator[IO[bytes]]:
    with payload.path.open("rb") as file:
        yield file


async def download(server: TestServer, headers: dict[str, str] | None = None) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/file"), headers=headers) as response,
    ):
        assert response.status in (200, 206)
        return await response.read()


async def read_a_little(server: TestServer) -> None:
    """Start a download, read 1 MiB of it, and hang up."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/file")) as response,
    ):
        await response.content.readexactly(1024 * 1024)


@pytest.fixture
def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server's TLS context for 127.0.0.1, and a client's that trusts it."""
    certificate = write_certificate(tmp_path, serial=1)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.cert, certificate.key)
    return server_context, ssl.create_default_context(cafile=certificate.cert)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestSendfile:
    async def test_suite_runs_on_cargobays_loop(self) -> None:
        assert isinstance(asyncio.get_running_loop(), Loop)

    async def test_slow_reader_gets_every_byte(self, server: TestServer, payload: Payload) -> None:
        """The send waits on a full socket and resumes where it stopped."""
        digest = hashlib.sha256()
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/file")) as response,
        ):
            assert response.status == 200
            async for piece in response.content.iter_chunked(1024 * 1024):
                digest.update(piece)
                await asyncio.sleep(0.002)
        assert digest.digest() == hashlib.sha256(payload.data).digest()

    async def test_range_sends_only_the_slice(self, server: TestServer, payload: Payload) -> None:
        body = await download(server, {"Range": "bytes=1000000-2999999"})
        assert body == payload.data[1_000_000:3_000_000]

    async def test_keep_alive_connection_serves_the_next_request(
        self, server: TestServer, payload: Payload
    ) -> None:
        """Reading resumes after a send, and the next response is framed right."""
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(3):
                async with session.get(server.make_url("/file")) as response:
                    assert await response.read() == payload.data

    async def test_client_leaving_mid_body_leaks_nothing(
        self, server: TestServer, payload: Payload
    ) -> None:
        await read_a_little(server)
        await asyncio.sleep(0.2)
        before = _open_descriptors()
        for _ in range(5):
            await read_a_little(server)
            await asyncio.sleep(0.1)
        assert await download(server) == payload.data
        await asyncio.sleep(0.2)
        assert _open_descriptors() <= before

    async def test_bytes_buffered_before_the_file_go_out_first(
        self, payload: Payload, opened: IO[bytes]
    ) -> None:
        """What the transport holds is flushed before the kernel sends the file."""
        loop = asyncio.get_running_loop()
        prefix = os.urandom(8 * 1024 * 1024)
        sent = loop.create_future()

        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(prefix)  # the client is not reading yet: most of it stays buffered
            sent.set_result(await loop.sendfile(writer.transport, opened, 100, _SIZE - 200))
            writer.close()

        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        received = await reader.read(-1)
        writer.close()
        listener.close()
        assert await sent == _SIZE - 200
        assert received == prefix + payload.data[100:-100]
        assert opened.tell() == _SIZE - 100

    async def test_https_download_is_copied_instead(
        self, payload: Payload, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
    ) -> None:
        """TLS needs the bytes in user space: aiohttp falls back to copying them."""
        server_context, client_context = tls_contexts
        runner = web.AppRunner(file_app(payload))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                url = f"https://127.0.0.1:{port}/file"
                async with session.get(url, ssl=client_context) as response:
                    assert await response.read() == payload.data
        finally:
            await runner.cleanup()
