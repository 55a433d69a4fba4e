"""The HTTP side of the pull-through cache: route each request, refuse writes, add headers.

Routing happens ahead of authentication, so access rules, handlers and
services all see the name content is cached under (`<prefix>/<repository>`):
the middleware rewrites the request's repository name to it. A write to a
proxied repository is refused with UNSUPPORTED. Answers to a request routed by
containerd's `?ns=` carry `OCI-Namespace`, and their `Link` to a next page
keeps the `ns`; answers served stale carry a `Warning` header per reason.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from registry.api.context import registry_of
from registry.api.middleware import Handler
from registry.errors import Unsupported
from registry.proxy import stale
from registry.proxy.routing import Router
from registry.reference import validate_name

ROUTER: web.AppKey[Router] = web.AppKey("proxy_router", Router)
_READS = frozenset({"GET", "HEAD"})


@web.middleware
async def proxy_routing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send requests for proxied repositories to the cache's name for them; refuse writes.

    Only the distribution API (`/v2/`) is routed; other pages naming a
    repository (the web page) use the name content is cached under.
    """
    if "name" not in request.match_info or not request.path.startswith("/v2/"):
        return await handler(request)
    router = request.app[ROUTER]
    name = validate_name(request.match_info["name"])
    namespace = request.query.get("ns")
    reading = request.method in _READS
    index = registry_of(request).index
    route = router.route(name, namespace, reading, index.has_repository)
    if route is None:
        return await handler(request)
    upstream = route.upstream.config
    if not reading:
        raise Unsupported(
            f"{name} is a read-only mirror of {route.remote} at {upstream.url} "
            f"(upstream {upstream.name!r}): push to that registry, or here to a "
            f"repository outside the prefix {upstream.prefix}/"
        )
    request.match_info["name"] = validate_name(route.local)
    with stale.collecting() as warnings:
        response = await handler(request)
    # Only manifests and tag lists are ever stale, and their answers are not begun yet.
    if not response.prepared:
        for text in warnings:
            response.headers.add("Warning", stale.header_value(text))
        if namespace and "Link" in response.headers:
            response.headers["Link"] = _with_namespace(response.headers["Link"], namespace)
    return response


def _with_namespace(link: str, namespace: str) -> str:
    """`link` to a next page, asking with `?ns=` too: the next page must take the same route."""
    target, end, rest = link.partition(">")
    joiner = "&" if "?" in target else "?"
    return f"{target}{joiner}{urlencode({'ns': namespace})}{end}{rest}"


async def add_namespace_header(request: web.Request, response: web.StreamResponse) -> None:
    """`OCI-Namespace` on every answer to a request an upstream's `?ns=` routed (errors too)."""
    namespace = request.query.get("ns", "")
    router = request.app.get(ROUTER)
    routed = router is not None and router.by_namespace(namespace) is not None
    if namespace and routed and "name" in request.match_info and request.path.startswith("/v2/"):
        response.headers["OCI-Namespace"] = namespace
