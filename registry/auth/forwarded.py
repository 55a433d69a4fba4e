"""The real client behind a trusted reverse proxy, from its `X-Forwarded-*` headers.

Only requests whose peer address is in `http.trusted_proxies` are believed;
from anyone else the headers are ignored, since any client can send them.
The client is the right-most `X-Forwarded-For` address that is not itself a
trusted proxy; `X-Forwarded-Proto` and `X-Forwarded-Host` give the scheme and
host the client used, which the token realm is built from. Everything after
this middleware (rate limits, login logs, challenges) sees the real client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from registry.api.middleware import Handler

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def forwarded_middleware(trusted_proxies: Sequence[str]) -> Middleware:
    """A middleware replacing the peer's address, scheme and host with the forwarded ones."""
    networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]

    @web.middleware
    async def from_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_trusted(request.remote, networks):
            return await handler(request)
        remote = request.remote or ""
        forwarded_for = ",".join(request.headers.getall("X-Forwarded-For", []))
        for hop in reversed([hop.strip() for hop in forwarded_for.split(",") if hop.strip()]):
            remote = hop
            if not _is_trusted(hop, networks):
                break
        proto = request.headers.get("X-Forwarded-Proto", "").strip().lower()
        host = request.headers.get("X-Forwarded-Host", "").strip()
        client = request.clone(
            remote=remote,
            scheme=proto if proto in ("http", "https") else request.scheme,
            host=host or request.host,
        )
        return await handler(client)

    return from_proxy


def _is_trusted(address: str | None, networks: Sequence[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)
