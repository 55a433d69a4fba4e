"""`/v2/<name>/blobs/<digest>`: GET (with ranges), HEAD and DELETE of blobs."""

from __future__ import annotations

from aiohttp import web

from registry.api.context import registry_of, repository_name
from registry.digest import Digest
from registry.errors import RangeNotSatisfiable

_OCTET_STREAM = "application/octet-stream"


async def get_blob(request: web.Request) -> web.StreamResponse:
    """The blob's bytes, all or the `Range` asked for; headers only on HEAD.

    A driver that offers a redirect URL answers 307 to it; a local file is
    sent by aiohttp's FileResponse; anything else is streamed from the driver.
    """
    name = repository_name(request)
    registry = registry_of(request)
    blob = await registry.blobs.stat(name, Digest.parse(request.match_info["digest"]))
    digest = str(blob.digest)
    headers = {
        "Docker-Content-Digest": digest,
        "Etag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": _OCTET_STREAM,
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(blob.size)
        return web.Response(headers=headers)
    url = await registry.blobs.redirect_url(blob)
    if url is not None:
        return web.Response(status=307, headers={"Location": url, "Docker-Content-Digest": digest})
    local = registry.blobs.local_file(blob)
    if local is not None:
        # FileResponse handles Range and conditional requests itself, and
        # sends with the loop's sendfile (registry/loop.py); where there is
        # none (HTTPS) it copies through a thread in pieces of 512 KiB: a
        # quarter of the hand-offs of its default for twice the memory.
        return web.FileResponse(local, chunk_size=512 * 1024, headers=headers)
    start, length = _requested_range(request, blob.size)
    response = web.StreamResponse(status=200 if length == blob.size else 206, headers=headers)
    if response.status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    response.content_length = length
    stream = await registry.blobs.open(blob, start, length)
    try:
        await response.prepare(request)
        async for chunk in stream:
            await response.write(chunk)
    finally:
        await stream.aclose()
    await response.write_eof()
    return response


def _requested_range(request: web.Request, size: int) -> tuple[int, int]:
    """(offset, length) of the single `Range` requested, or of the whole blob."""
    if "Range" not in request.headers:
        return 0, size
    try:
        wanted = request.http_range
    except ValueError as e:
        raise RangeNotSatisfiable(f"malformed Range header: {e}", size=size) from e
    start, stop = wanted.start, wanted.stop
    if start is None:
        return 0, size
    if start < 0:  # a suffix range: the last -start bytes
        start = max(size + start, 0)
        stop = size
    stop = size if stop is None else min(stop, size)
    if start >= size or stop <= start:
        raise RangeNotSatisfiable(f"range not satisfiable for a blob of {size} bytes", size=size)
    return start, stop - start


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink the blob from the repository: 202."""
    name = repository_name(request)
    await registry_of(request).blobs.delete(name, Digest.parse(request.match_info["digest"]))
    return web.Response(status=202)
