"""`/v2/<name>/blobs/<digest>`: GET (with ranges), HEAD and DELETE of blobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import BinaryIO

from aiohttp import web

from registry.api.context import registry_of, repository_name
from registry.digest import Digest
from registry.errors import BlobRangeNotSatisfiable, StorageError
from registry.services.blobs import BlobInfo

_OCTET_STREAM = "application/octet-stream"


async def get_blob(request: web.Request) -> web.StreamResponse:
    """The blob's bytes, all or the `Range` asked for; headers only on HEAD.

    A driver that offers a redirect URL answers 307 to it; a local file is
    sent by the kernel (sendfile); anything else is streamed from the driver.
    """
    name = repository_name(request)
    registry = registry_of(request)
    wanted = Digest.parse(request.match_info["digest"])
    if request.method == "HEAD":
        blob = await registry.blobs.head(name, wanted)
        headers = _headers(blob)
        headers["Content-Length"] = str(blob.size)
        return web.Response(headers=headers)
    blob = await registry.blobs.stat(name, wanted)
    digest = str(blob.digest)
    headers = _headers(blob)
    url = await registry.blobs.redirect_url(blob)
    if url is not None:
        return web.Response(status=307, headers={"Location": url, "Docker-Content-Digest": digest})
    start, length = _requested_range(request, blob.size)
    response = web.StreamResponse(status=200 if length == blob.size else 206, headers=headers)
    if response.status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    response.content_length = length
    sent: int | None = None
    file = await registry.blobs.open_file(blob)
    if file is not None:
        with file:
            await response.prepare(request)
            sent = await _sendfile(request, file, start, length)
    if sent is None:  # no local file, or the loop cannot send it (HTTPS)
        # Opened before the answer begins (where there is no file), so a blob
        # gone since `stat` still gets its 404.
        sent = await _stream(request, response, await registry.blobs.open(blob, start, length))
    if sent < length:
        # Too late for an error answer: raising drops the connection, so the
        # client sees a short body rather than the next response's bytes.
        raise StorageError("blobs", digest, f"storage held {sent} of the {length} bytes asked")
    await response.write_eof()
    return response


def _headers(blob: BlobInfo) -> dict[str, str]:
    digest = str(blob.digest)
    return {
        "Docker-Content-Digest": digest,
        "Etag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": _OCTET_STREAM,
    }


async def _sendfile(request: web.Request, file: BinaryIO, start: int, length: int) -> int | None:
    """Bytes of `file` sent by the kernel from `start`, at most `length`.

    None, with nothing sent, where the loop cannot: on HTTPS (registry.loop's,
    uvloop's own) or without sendfile(2).
    """
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    try:
        sent = await asyncio.get_running_loop().sendfile(transport, file, start, length)
    except NotImplementedError:
        return None
    # The bytes went out around the writer; counted, they reach the access log.
    request.writer.output_size += sent
    return sent


async def _stream(
    request: web.Request, response: web.StreamResponse, stream: AsyncGenerator[bytes, None]
) -> int:
    """Write `stream` out (preparing `response` if need be); the bytes written."""
    written = 0
    try:
        await response.prepare(request)
        async for chunk in stream:
            await response.write(chunk)
            written += len(chunk)
    finally:
        await stream.aclose()
    return written


def _requested_range(request: web.Request, size: int) -> tuple[int, int]:
    """(offset, length) of the single `Range` requested, or of the whole blob."""
    if "Range" not in request.headers:
        return 0, size
    try:
        wanted = request.http_range
    except ValueError as e:
        raise BlobRangeNotSatisfiable(f"malformed Range header: {e}", size=size) from e
    start, stop = wanted.start, wanted.stop
    if start is None:
        return 0, size
    if start < 0:  # a suffix range: the last -start bytes
        start = max(size + start, 0)
        stop = size
    stop = size if stop is None else min(stop, size)
    if start >= size or stop <= start:
        raise BlobRangeNotSatisfiable(
            f"range not satisfiable for a blob of {size} bytes", size=size
        )
    return start, stop - start


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink the blob from the repository: 202."""
    name = repository_name(request)
    await registry_of(request).blobs.delete(name, Digest.parse(request.match_info["digest"]))
    return web.Response(status=202)
