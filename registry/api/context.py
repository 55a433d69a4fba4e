"""What every handler needs from a request: the registry, the repository name, the body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from registry.config import Config
from registry.errors import BodyTimeout, PayloadTooLarge
from registry.reference import validate_name
from registry.services.registry import Registry

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
# Where the security middleware puts the request's "may this client pull that
# repository?" (absent: every client may pull everything).
MAY_PULL: web.RequestKey[Callable[[str], bool]] = web.RequestKey("may_pull")

# Bodies are handed to storage in pieces of about this size: large enough that
# a disk or S3 write per piece is cheap, small enough to bound memory per request.
# Peak RSS with 50 concurrent 60 MiB chunked uploads on the filesystem driver
# (aiohttp's read buffer at 64 KiB, see `server_options`): 64 KiB pieces 72 MB,
# 256 KiB 100 MB; a filesystem write per 64 KiB costs no throughput measurably.
BODY_PIECE = 64 * 1024


def registry_of(request: web.Request) -> Registry:
    """The registry serving `request`."""
    return request.app[REGISTRY]


def config_of(request: web.Request) -> Config:
    """The configuration of the app serving `request`."""
    return request.app[CONFIG]


def repository_name(request: web.Request) -> str:
    """The repository named in the URL, checked against the spec's grammar."""
    return validate_name(request.match_info["name"])


def may_pull(request: web.Request) -> Callable[[str], bool]:
    """Whether the client of `request` may pull a repository, by name."""
    found = request.get(MAY_PULL)
    return found if found is not None else (lambda name: True)


async def _received(request: web.Request) -> AsyncIterator[bytes]:
    """The body as aiohttp receives it, in chunks of any size.

    Raises `BodyTimeout` when no byte arrives for `limits.body_idle_timeout_seconds`:
    a stalled client must not hold a connection, a handler and its buffers forever.
    """
    idle = config_of(request).limits.body_idle_timeout_seconds or None
    while True:
        try:
            async with asyncio.timeout(idle):
                data, end_of_chunk = await request.content.readchunk()
        except TimeoutError:
            raise BodyTimeout(f"no byte of the request body arrived for {idle:g} seconds") from None
        if not data:
            if end_of_chunk:
                continue  # the end of an HTTP chunk of a chunked body
            return
        yield data


async def body_pieces(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as a stream of pieces of about `BODY_PIECE` bytes.

    Raises `BodyTimeout` if the body stalls (see `_received`), after yielding
    every byte received before the stall.
    """
    if not request.can_read_body:
        # aiohttp serves every empty body from one shared reader whose
        # readchunk() never reports the end again after its first use.
        return
    # Joined once and let go of before the piece is written: only one copy of
    # the bytes is alive while the writer works on it.
    pending: list[bytes] = []
    size = 0
    # Chunks as aiohttp received them: iter_chunked(n) would raise the
    # connection's read-ahead to 2n, iter_any() joins all it has buffered.
    try:
        async for data in _received(request):
            pending.append(data)
            size += len(data)
            if size >= BODY_PIECE:
                piece = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                size = 0
                yield piece
    except BodyTimeout:
        # What arrived before the stall is the client's: an upload session keeps
        # it, and the client resumes from the session's Range.
        if pending:
            yield b"".join(pending)
        raise
    if pending:
        yield b"".join(pending)


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, which must be at most `limit` bytes, else `PayloadTooLarge`.

    Reads until the end of the body whatever its framing (Content-Length or
    chunked), but never holds more than `limit` + one piece in memory.
    `BodyTimeout` if the body stalls.
    """
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"{what} is limited to {limit} bytes")
    if not request.can_read_body:
        return b""
    data = bytearray()
    async for piece in _received(request):
        data += piece
        if len(data) > limit:
            raise PayloadTooLarge(f"{what} is limited to {limit} bytes")
    return bytes(data)
