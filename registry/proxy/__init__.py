"""The pull-through cache: this registry as a mirror of other registries.

`install_proxy(app, config)` is the one entry the application calls; with no
`[[proxy.upstreams]]` it does nothing. The modules, each one concern:

- `client`: talking to one upstream (its authentication, manifests, blobs);
- `routing`: which upstream a repository or containerd namespace belongs to;
- `middleware`: routing each request, refusing writes, the response headers;
- `manifests`, `blobs`: decorators of the registry's services that read through;
- `flight`: one blob download that every concurrent request follows;
- `stale`: how a service marks an answer stale.

Pulls of proxied manifests are recorded like any other, by the pull log of
`registry.gc.pulls` wrapping these decorators; garbage collection's retention
reads them (an upstream's `retention_days` is its repositories' default rule).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from registry.api.context import REGISTRY
from registry.api.middleware import errors_middleware
from registry.config import Config
from registry.proxy.blobs import ProxyBlobStore
from registry.proxy.client import Upstream
from registry.proxy.manifests import ProxyManifestStore
from registry.proxy.middleware import ROUTER, add_namespace_header, proxy_routing
from registry.proxy.routing import Router

__all__ = ["install_proxy"]


def install_proxy(app: web.Application, config: Config) -> None:
    """Make `app` a pull-through cache of the configured upstreams (none: leave it alone).

    Call after the registry's own set-up: the services are decorated once the
    registry is open, and routing goes right after the error middleware, ahead
    of authentication.
    """
    if not config.proxy.upstreams:
        return
    position = app.middlewares.index(errors_middleware) + 1
    app.middlewares.insert(position, proxy_routing)
    app.on_response_prepare.append(add_namespace_header)

    async def proxy_context(app: web.Application) -> AsyncIterator[None]:
        # Blobs pass through byte for byte: a compressed layer stays compressed.
        session = aiohttp.ClientSession(auto_decompress=False)
        router = Router([Upstream(u, session) for u in config.proxy.upstreams])
        app[ROUTER] = router
        registry = app[REGISTRY]
        registry.blobs = ProxyBlobStore(registry.blobs, registry.uploads, router, None)
        registry.manifests = ProxyManifestStore(
            registry.manifests,
            registry.driver,
            registry.index,
            registry.feed,
            router,
            config.limits.max_manifest_bytes,
        )
        try:
            yield
        finally:
            await session.close()

    app.cleanup_ctx.append(proxy_context)
