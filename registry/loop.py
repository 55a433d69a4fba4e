"""The event loop `cargobay serve` runs on: uvloop, plus zero-copy file sends.

uvloop is faster than asyncio's own loop on everything a registry does but
one: it has no `loop.sendfile`, so a blob on a directory would be read in a
worker thread and written back out, two copies and a thread hand-off per
piece. `Loop.sendfile` sends it with the kernel's `sendfile(2)` on plain TCP
connections, as asyncio's own loop does.
"""

from __future__ import annotations

import asyncio
import os
from typing import IO, Any

import uvloop
from uvloop.loop import TCPTransport  # type: ignore[attr-defined]  # not in uvloop's stubs

# sendfile(2) needs a count. A call returns once the socket's buffer is full,
# and the send then waits for the loop; this bound only keeps one call from
# running long for a reader as fast as the disk.
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

        Returns the bytes sent (fewer if the file ends first); the file's
        position ends after them. Bytes the transport already buffered go out
        first. Raises NotImplementedError on any transport but plain TCP (TLS
        needs the bytes in user space), whatever `fallback` says: the copy is
        the caller's to make, as aiohttp's FileResponse does.
        ConnectionResetError if the peer goes away part way.
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
