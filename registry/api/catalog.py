"""`GET /v2/_catalog`: every repository, sorted, paginated."""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.api.context import registry_of
from registry.api.pagination import json_page, paginate


async def list_repositories(request: web.Request) -> web.Response:
    """Repository names in lexical order, with a `Link` header when more follow."""
    names, link = paginate(request, registry_of(request).index.repositories)
    return json_page(orjson.dumps({"repositories": names}), link)
