"""The aiohttp application: routes, middleware, and the registry's life cycle.

The registry (driver opened, tag index rebuilt) is set up in the app's
cleanup context, so the server accepts connections only once it is ready, and
the driver is closed when the app shuts down. Expired upload sessions are
purged in the background while the app runs (not in read-only mode).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from registry.api.context import CONFIG, REGISTRY
from registry.api.middleware import add_api_version, errors_middleware
from registry.api.routes import add_routes
from registry.auth import install_security
from registry.config import Config
from registry.drivers import create_driver
from registry.drivers.base import StorageDriver
from registry.drivers.metrics import DriverMetrics
from registry.drivers.sizelimit import BlobSizeLimit
from registry.gc.schedule import gc_context
from registry.observability import install_observability
from registry.proxy import install_proxy
from registry.services.purge import purge_uploads_periodically
from registry.services.registry import Registry
from registry.ui import setup_ui


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """The registry application for `config`; `driver` overrides the configured one (tests).

    Raises `ConfigError` if a file the configuration names (htpasswd, keys) is unusable.
    """
    app = web.Application(middlewares=[errors_middleware])
    app[CONFIG] = config
    app.on_response_prepare.append(add_api_version)
    add_routes(app)
    setup_ui(app, config)
    install_security(app, config)
    storage = driver if driver is not None else create_driver(config.storage)
    if config.limits.max_blob_bytes:
        storage = BlobSizeLimit(storage, config.limits.max_blob_bytes)
    if config.metrics.addr:
        storage = DriverMetrics(storage)
    purge_after = 0 if config.storage.read_only else config.limits.upload_expiry_seconds

    async def registry_context(app: web.Application) -> AsyncIterator[None]:
        registry = await Registry.open(
            storage,
            delete_enabled=config.storage.delete,
            feed_config=config.feed,
            read_only=config.storage.read_only,
            upload_expiry=float(config.limits.upload_expiry_seconds),
        )
        app[REGISTRY] = registry
        purger = None
        if purge_after:
            purger = asyncio.create_task(purge_uploads_periodically(storage, purge_after))
        yield
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
        await registry.close()

    app.cleanup_ctx.append(registry_context)
    install_proxy(app, config)
    app.cleanup_ctx.append(gc_context(config))
    install_observability(app, config)
    return app
