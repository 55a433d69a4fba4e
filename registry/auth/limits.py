"""Size limits on requests: headers, manifest bodies and blob uploads.

Headers are bounded by aiohttp's parser (`server_options`), before any
handler runs. Bodies are refused as early as their announced size allows:
a `Content-Length` or a chunk's `Content-Range` past the limit is answered 413
without reading a byte. A blob whose chunks add up past the limit, or that
arrives without an announced size, is stopped by `BlobSizeLimit` in the
storage layer as its bytes are written.
"""

from __future__ import annotations

from typing import TypedDict

from aiohttp import web

from registry.api.params import parse_content_range
from registry.auth.requirements import Body
from registry.config import LimitsConfig
from registry.errors import BlobUploadInvalid, PayloadTooLarge

# How much of a body aiohttp reads ahead of a handler: it stops reading a
# connection past twice this. aiohttp 3.14's default (256 KiB) held up to
# 512 KiB per upload while storage caught up: 50 concurrent chunked uploads
# to a directory peaked at 93 MB RSS, 72 MB at 64 KiB.
READ_BUFFER = 64 * 1024


class ServerOptions(TypedDict):
    """Keyword arguments of aiohttp's server that bound what it reads before any handler."""

    max_line_size: int
    max_field_size: int
    read_bufsize: int


def server_options(limits: LimitsConfig) -> ServerOptions:
    """Header and read-ahead bounds for aiohttp's server (`run_app`, `AppRunner`, `TestServer`)."""
    return {
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
        "read_bufsize": READ_BUFFER,
    }


def check_body_size(request: web.Request, body: Body, limits: LimitsConfig) -> None:
    """Raise `PayloadTooLarge` if the request announces a body over its route's limit."""
    announced = request.content_length or 0
    if body is Body.MANIFEST and announced > limits.max_manifest_bytes:
        raise PayloadTooLarge(f"manifests are limited to {limits.max_manifest_bytes} bytes")
    if body is Body.BLOB and limits.max_blob_bytes:
        # A chunk's range ends at an offset in the whole blob: the blob is at least that long.
        end = 0
        content_range = request.headers.get("Content-Range")
        if content_range:
            try:
                start, length = parse_content_range(content_range)
            except BlobUploadInvalid:
                pass  # the handler refuses it, before reading a byte
            else:
                end = start + length
        if max(announced, end) > limits.max_blob_bytes:
            raise PayloadTooLarge(f"blobs are limited to {limits.max_blob_bytes} bytes")
