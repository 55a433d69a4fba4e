"""The event loop `cargobay serve` runs on: uvloop, plus zero-copy file sends.

uvloop is faster than asyncio's own loop on everything a registry does except
one: it has no `loop.sendfile`, so aiohttp's `FileResponse` falls back to
reading each piece of a blob in a worker thread and writing it back out, two
copies and a thread hand-off per piece. `Loop.sendfile` gives it the kernel's
`sendfile(2)` on plain TCP connections, as asyncio's own loop does.
"""

from __future__ import annotations

import asyncio
import os
from typing import IO, Any

import uvloop
from uvloop.loop import TCPTransport  # type: ignore[attr-defined]  # not in uvloop's stubs

# One sendfile(2) call moves at most this much, so a fast reader of a large
# blob still lets the loop serve other connections between calls.
_MAX_CALL = 8 * 1024 * 1024


class Loop(uvloop.Loop):
    """uvloop with `sendfile` for plain TCP transports."""

    async def sendfile(
        self,
        transport: asyncio.BaseTransport,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send `count` bytes of `file` from `offset` (to its end if None).

        Returns the bytes sent; the file's position ends after them. Bytes the
        transport already buffered go out first. Raises NotImplementedError on
        any transport but plain TCP (TLS needs the bytes in user space), so a
        caller falls back to copying, as aiohttp does; ConnectionResetError if
        the peer goes away part way.
        """
        if not isinstance(transport, TCPTransport) or transport.is_closing():
            raise NotImplementedError("sendfile needs an open plain TCP transport")
        # A duplicate descriptor stays valid even if the transport closes its
        # own while we wait, so a send never lands on a reused descriptor.
        out = os.dup(transport.get_extra_info("socket").fileno())
        reading = transport.is_reading()
        transport.pause_reading()
        sent = 0
        try:
            while transport.get_write_buffer_size():
                await self._writable(out)
                await asyncio.sleep(0)  # let uvloop flush on the same readiness
            while count is None or sent < count:
                want = _MAX_CALL if count is None else min(count - sent, _MAX_CALL)
                try:
                    n = os.sendfile(out, file.fileno(), offset + sent, want)
                except BlockingIOError:
                    await self._writable(out)
                    continue
                except (BrokenPipeError, ConnectionError) as e:
                    raise ConnectionResetError(f"peer went away after {sent} bytes") from e
                if n == 0:
                    break
                sent += n
            return sent
        finally:
            os.close(out)
            file.seek(offset + sent)
            if reading and not transport.is_closing():
                transport.resume_reading()

    async def _writable(self, fd: int) -> None:
        ready: asyncio.Future[None] = self.create_future()
        self.add_writer(fd, _resolve, ready)
        try:
            await ready
        finally:
            self.remove_writer(fd)


def _resolve(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


class EventLoopPolicy(uvloop.EventLoopPolicy):  # type: ignore[misc]
    """uvloop's policy, making `Loop`s."""

    def _loop_factory(self) -> Loop:
        return Loop()
