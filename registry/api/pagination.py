"""The `n`/`last` pagination of tag and catalog listings, and its `Link` header."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from aiohttp import web

from registry.api.params import parse_count

Listing = Callable[[str | None, int | None], list[str]]


def page_query(request: web.Request) -> tuple[str | None, int | None]:
    """The `last` and `n` a listing request asks for; a non-numeric or negative `n` is
    `PaginationInvalid`."""
    raw_n = request.query.get("n")
    return request.query.get("last") or None, parse_count(raw_n) if raw_n else None


def next_link(request: web.Request, query: Mapping[str, str] | None) -> str | None:
    """The `Link` header to the next page of this listing, asked with `query` (None: no more).

    It names the path the client asked, so it stays right behind any routing.
    """
    if query is None:
        return None
    return f'<{request.path}?{urlencode(query)}>; rel="next"'


def paginate(request: web.Request, listing: Listing) -> tuple[list[str], str | None]:
    """The page of `listing(last, n)` the request asks for, and the `Link` to the next one.

    A non-numeric or negative `n` is `PaginationInvalid`. Without `n` the whole
    listing after `last` is returned and there is no next page.
    """
    last, n = page_query(request)
    # One item more than asked tells whether a next page exists.
    items = listing(last, None if n is None else n + 1)
    if n is None or len(items) <= n:
        return items, None
    items = items[:n]
    if not items:
        return items, None
    return items, next_link(request, {"n": str(n), "last": items[-1]})


def json_page(body: bytes, link: str | None) -> web.Response:
    """A JSON listing response, with its `Link` header when a next page exists."""
    response = web.Response(body=body, content_type="application/json")
    if link is not None:
        response.headers["Link"] = link
    return response
