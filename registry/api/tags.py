"""`GET /v2/<name>/tags/list`: a repository's tags, sorted, paginated."""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.api.context import registry_of, repository_name
from registry.api.pagination import json_page, next_link, page_query


async def list_tags(request: web.Request) -> web.Response:
    """The tags of the repository in lexical order; `NAME_UNKNOWN` if it does not exist."""
    name = repository_name(request)
    last, n = page_query(request)
    page = await registry_of(request).manifests.tags(name, last, n)
    return json_page(orjson.dumps({"name": name, "tags": page.tags}), next_link(request, page.next))
