"""Zero-copy file sends on the loop `cargobay serve` runs on (the whole suite runs on it).

Blob downloads through the registry are tested in tests/api/test_blobs.py;
these tests hold `Loop.sendfile` to its own contract.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from registry.loop import Loop
from tests.test_tls import write_certificate

# Larger than loopback's socket buffers, so sends stop on a full socket and wait.
_SIZE = 24 * 1024 * 1024

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def data() -> bytes:
    return os.urandom(_SIZE)


@pytest.fixture
def opened(tmp_path: Path, data: bytes) -> Iterator[IO[bytes]]:
    """A file holding `data`, open for reading."""
    path = tmp_path / "payload"
    path.write_bytes(data)
    with path.open("rb") as file:
        yield file


@pytest.fixture
async def serve_with() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Start a server running `serve` for each connection; returns its port."""
    listeners: list[asyncio.Server] = []

    async def start(serve: Serve, tls: ssl.SSLContext | None = None) -> int:
        listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
        listeners.append(listener)
        port: int = listener.sockets[0].getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.close()
        await listener.wait_closed()


def sending(
    file: IO[bytes], outcome: asyncio.Future[BaseException | None], then: bytes = b""
) -> Serve:
    """A connection handler sending `file` with the loop's sendfile, then `then`.

    `outcome` gets None, or the ConnectionResetError or NotImplementedError raised.
    """

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.get_running_loop().sendfile(writer.transport, file)
            outcome.set_result(None)
        except (ConnectionResetError, NotImplementedError) as e:
            outcome.set_result(e)
        if then:
            writer.write(then)
        writer.close()

    return serve


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestSendfile:
    async def test_suite_runs_on_cargobays_loop(self) -> None:
        assert isinstance(asyncio.get_running_loop(), Loop)

    async def test_bytes_buffered_before_the_file_go_out_first(
        self, serve_with: Callable[..., Awaitable[int]], data: bytes, opened: IO[bytes]
    ) -> None:
        """What the transport holds is flushed first; a slow reader gets every byte."""
        loop = asyncio.get_running_loop()
        prefix = os.urandom(8 * 1024 * 1024)
        sent: asyncio.Future[int] = loop.create_future()

        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(prefix)  # the client is not reading yet: most of it stays buffered
            sent.set_result(await loop.sendfile(writer.transport, opened, 100, _SIZE - 200))
            writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", await serve_with(serve))
        received = bytearray()
        while piece := await reader.read(1024 * 1024):
            received += piece
            await asyncio.sleep(0.001)
        writer.close()
        assert await sent == _SIZE - 200
        assert received == prefix + data[100:-100]
        assert opened.tell() == _SIZE - 100

    async def test_peer_leaving_mid_send_raises_connection_reset_and_leaks_nothing(
        self, serve_with: Callable[..., Awaitable[int]], opened: IO[bytes]
    ) -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        port = await serve_with(sending(opened, outcome))
        before = _open_descriptors()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readexactly(1024 * 1024)
        # A reset rather than a clean close: the server's next send fails at once.
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.close()
        assert isinstance(await asyncio.wait_for(outcome, 10), ConnectionResetError)
        await asyncio.sleep(0.1)
        assert _open_descriptors() <= before

    async def test_tls_transport_is_refused_with_nothing_sent(
        self, serve_with: Callable[..., Awaitable[int]], tmp_path: Path, opened: IO[bytes]
    ) -> None:
        """TLS needs the bytes in user space: the caller copies them instead."""
        certificate = write_certificate(tmp_path, serial=1)
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(certificate.cert, certificate.key)
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        port = await serve_with(sending(opened, outcome, then=b"copied instead"), server_context)
        client_context = ssl.create_default_context(cafile=certificate.cert)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        assert await reader.read(-1) == b"copied instead"
        writer.close()
        assert isinstance(await outcome, NotImplementedError)
        assert opened.tell() == 0
