"""One HTTP/1.1 request written byte by byte on its own connection, for slow-client tests.

An HTTP client library sends a body as fast as it can and hides a stalled one;
these tests need the exact bytes on the wire: a trickle, a stall, a
`Content-Length` the body never reaches.
"""

from __future__ import annotations

import asyncio
import contextlib


class RawRequest:
    """A request whose request line and headers are sent at `open`, its body as the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, method: str, path: str, length: int, sent: bytes = b"", **headers: str
    ) -> RawRequest:
        """Connect to 127.0.0.1:`port`, announce `length` body bytes and send `sent` of them."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Content-Length: {length}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        """More of the body."""
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of the response; fails after 30 s without one."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines if line)
        body = await self.reader.readexactly(int(headers.get("Content-Length", "0")))
        return int(status_line.split()[1]), headers, body

    async def closed_by_server(self) -> bool:
        """Whether the server closes the connection within 5 s (after its answer)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 5) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
