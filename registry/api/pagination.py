"""The `n`/`last` pagination of tag and catalog listings, and its `Link` header."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web

from registry.api.params import parse_count

Listing = Callable[[str | None, int | None], list[str]]


def paginate(request: web.Request, listing: Listing) -> tuple[list[str], str | None]:
    """The page of `listing(last, n)` the request asks for, and the `Link` to the next one.

    A non-numeric or negative `n` is `PaginationInvalid`. Without `n` the whole
    listing after `last` is returned and there is no next page.
    """
    raw_n = request.query.get("n")
    last = request.query.get("last") or None
    n = parse_count(raw_n) if raw_n else None
    # One item more than asked tells whether a next page exists.
    items = listing(last, None if n is None else n + 1)
    if n is None or len(items) <= n:
        return items, None
    items = items[:n]
    if not items:
        return items, None
    query = urlencode({"n": n, "last": items[-1]})
    return items, f'<{request.path}?{query}>; rel="next"'


def json_page(body: bytes, link: str | None) -> web.Response:
    """A JSON listing response, with its `Link` header when a next page exists."""
    response = web.Response(body=body, content_type="application/json")
    if link is not None:
        response.headers["Link"] = link
    return response
