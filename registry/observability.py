"""What lets an operator see the registry run, put on the application in one call.

`install_observability` adds, around the API:
- the request-context middleware (outermost: request ids for every log line)
  and the response stamp (`X-Request-Id`); a `Server` header without versions
  on every response of the process;
- `/healthz` and `/readyz`, with the readiness probe running while the app does,
  and the flushing of the metrics tallied in memory;
- webhook notifications, when `[[notifications.endpoints]]` lists any.

Metrics are recorded by the access logger (`registry.api.observe`) and the
storage wrapper (`registry.drivers.metrics`); the metrics listener itself is
the serving process's (`registry.metrics.metrics_listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from registry.api.context import REGISTRY
from registry.api.health import READINESS, add_health_routes
from registry.api.observe import hide_server_software, request_middleware, stamp_response
from registry.config import Config
from registry.health import Readiness
from registry.metrics import flush_periodically
from registry.notifications import Notifier


def install_observability(app: web.Application, config: Config) -> None:
    """Add request ids, health endpoints and notifications to `app`.

    Call after the registry's own cleanup context is added: this one uses the
    registry it opens.
    """
    app.middlewares.insert(0, request_middleware(record_metrics=bool(config.metrics.addr)))
    app.on_response_prepare.append(stamp_response)
    hide_server_software()
    add_health_routes(app)
    readiness = app[READINESS] = Readiness()

    async def running(app: web.Application) -> AsyncIterator[None]:
        registry = app[REGISTRY]
        notifier = None
        if config.notifications.endpoints:
            notifier = Notifier(config.notifications, config.http.port)
            notifier.install(registry)
            notifier.start()
        background = [
            asyncio.create_task(readiness.run(registry)),
            asyncio.create_task(flush_periodically()),
        ]
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if notifier is not None:
            await notifier.close()

    app.cleanup_ctx.append(running)
