"""The aiohttp application: routes, middleware, and the registry's life cycle.

The registry (driver opened, tag index rebuilt) is set up in the app's
cleanup context, so the server accepts connections only once it is ready, and
the driver is closed when the app shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from registry.api.context import REGISTRY
from registry.api.middleware import add_api_version, errors_middleware
from registry.api.routes import add_routes
from registry.config import Config
from registry.storage.driver import StorageDriver
from registry.storage.registry import Registry, create_driver


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """The registry application for `config`; `driver` overrides the configured one (tests)."""
    app = web.Application(middlewares=[errors_middleware])
    app.on_response_prepare.append(add_api_version)
    add_routes(app)
    storage = driver if driver is not None else create_driver(config.storage)

    async def registry_context(app: web.Application) -> AsyncIterator[None]:
        registry = await Registry.open(storage, delete_enabled=config.storage.delete)
        app[REGISTRY] = registry
        yield
        await registry.close()

    app.cleanup_ctx.append(registry_context)
    return app
