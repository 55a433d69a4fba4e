"""The ceiling of an aiohttp server here: any GET or HEAD answered with one fixed body.

Run as `python -m bench.ceiling PORT SIZE`. It uses uvloop like Cargobay and
carries the headers a manifest response carries, so the manifest storm's
requests/s against it is the most any aiohttp handler could do on this machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from aiohttp import web


def make_app(size: int) -> web.Application:
    body = (b'{"schemaVersion":2}' + b" " * size)[:size]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    headers = {
        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        "Docker-Content-Digest": digest,
        "Etag": f'"{digest}"',
        "Docker-Distribution-API-Version": "registry/2.0",
    }

    async def answer(request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(headers=dict(headers, **{"Content-Length": str(size)}))
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)  # HEAD too
    return app


def main() -> None:
    port, size = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    web.run_app(make_app(size), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
