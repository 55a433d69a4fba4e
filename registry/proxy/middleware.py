"""The HTTP side of the pull-through cache: route each request, refuse writes, add headers.

Routing happens ahead of authentication, so access rules, handlers and
services all see the name content is cached under (`<prefix>/<repository>`):
the middleware rewrites the request's repository name to it. A write to a
proxied repository is refused with UNSUPPORTED. Answers to a request routed by
containerd's `?ns=` carry `OCI-Namespace`; answers served stale carry a
`Warning` header per reason.
"""

from __future__ import annotations

from aiohttp import web

from registry.api.context import registry_of
from registry.api.middleware import Handler
from registry.errors import Unsupported
from registry.proxy import stale
from registry.proxy.routing import Router
from registry.reference import validate_name

ROUTER: web.AppKey[Router] = web.AppKey("proxy_router", Router)
_NAMESPACE = "cargobay.proxy.namespace"
_WARNINGS = "cargobay.proxy.warnings"
_READS = frozenset({"GET", "HEAD"})


@web.middleware
async def proxy_routing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send requests for proxied repositories to the cache's name for them; refuse writes."""
    if "name" not in request.match_info:
        return await handler(request)
    router = request.app[ROUTER]
    name = validate_name(request.match_info["name"])
    namespace = request.query.get("ns")
    reading = request.method in _READS
    index = registry_of(request).index
    route = router.route(name, namespace, reading, index.has_repository)
    if route is None:
        return await handler(request)
    if namespace and router.by_namespace(namespace) is route.upstream:
        request[_NAMESPACE] = namespace
    upstream = route.upstream.config
    if not reading:
        raise Unsupported(
            f"{name} is a read-only mirror of {route.remote} at {upstream.url} "
            f"(upstream {upstream.name!r}): push to that registry, or here to a "
            f"repository outside the prefix {upstream.prefix}/"
        )
    request.match_info["name"] = validate_name(route.local)
    with stale.collecting() as warnings:
        request[_WARNINGS] = warnings
        return await handler(request)


async def add_proxy_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`OCI-Namespace` for a namespace-routed request, `Warning` for a stale answer."""
    namespace = request.get(_NAMESPACE)
    if namespace:
        response.headers["OCI-Namespace"] = namespace
    for text in request.get(_WARNINGS, ()):
        response.headers.add("Warning", stale.header_value(text))
