"""`GET /v2/`: the API version check every client starts with."""

from __future__ import annotations

from aiohttp import web


async def version_check(request: web.Request) -> web.Response:
    """200 with an empty JSON object: this endpoint speaks the v2 API."""
    return web.Response(body=b"{}", content_type="application/json")
