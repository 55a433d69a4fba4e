"""`GET /healthz` and `GET /readyz`: liveness and readiness, unauthenticated and cheap.

`/healthz` answers 200 while the process serves at all. `/readyz` answers 200
when `registry.health.Readiness` has no failing check, else 503 with a JSON
body naming each failing check and why; load balancers and Kubernetes send
traffic only to a ready process.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from registry.health import Readiness

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    """200: the process is alive."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """200 when ready; 503 with `{"status": "unavailable", "failing": {check: reason}}`."""
    failing = request.app[READINESS].failing()
    if not failing:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")
    body = orjson.dumps({"status": "unavailable", "failing": failing})
    return web.Response(status=503, body=body, content_type="application/json")


def add_health_routes(app: web.Application) -> None:
    """Register the two endpoints on `app`."""
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)
