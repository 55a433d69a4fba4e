"""`GET /v2/<name>/tags/list`: a repository's tags, sorted, paginated."""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.api.context import registry_of, repository_name
from registry.api.pagination import json_page, paginate
from registry.errors import NameUnknown


async def list_tags(request: web.Request) -> web.Response:
    """The tags of the repository in lexical order; `NAME_UNKNOWN` if it does not exist."""
    name = repository_name(request)
    index = registry_of(request).index
    await index.load(name)
    if not index.has_repository(name):
        raise NameUnknown(detail={"name": name})
    tags, link = paginate(request, lambda last, n: index.tags(name, last, n))
    return json_page(orjson.dumps({"name": name, "tags": tags}), link)
