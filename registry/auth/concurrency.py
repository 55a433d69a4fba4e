"""Bounds on the upload requests in flight: per client address and in all.

Each request that carries a blob body (POST, PATCH and PUT under
`/blobs/uploads/` with a body) holds a slot from its headers to its answer;
opening a session or a final PUT without a body takes none. Over either
bound it is refused at once with 429 `TOOMANYREQUESTS` and `Retry-After`, before
any of its body is read, so a flood of slow uploads cannot hold every file
descriptor and buffer of the process. The bounds are per process: with
`--workers N` the registry as a whole admits N times as many.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web
from aiohttp.typedefs import Middleware

from registry.api.middleware import Handler
from registry.auth.requirements import Body, route_rule
from registry.errors import TooManyRequests

#: Seconds a refused client is told to wait: an upload slot frees as soon as
#: any upload request ends.
RETRY_AFTER = 1


class UploadSlots:
    """Counts of upload requests in flight, in all and per client; 0 means no bound."""

    def __init__(self, total: int, per_client: int) -> None:
        self._total = total
        self._per_client = per_client
        self._held: Counter[str] = Counter()
        self._all = 0

    def acquire(self, client: str) -> None:
        """Take a slot for `client`; `TooManyRequests` if either bound is reached."""
        if self._total and self._all >= self._total:
            raise TooManyRequests(
                f"{self._all} uploads in progress, the most this server takes",
                retry_after=RETRY_AFTER,
            )
        if self._per_client and self._held[client] >= self._per_client:
            raise TooManyRequests(
                f"{self._per_client} uploads in progress from {client}, the most one client may"
                " send at once",
                retry_after=RETRY_AFTER,
            )
        self._held[client] += 1
        self._all += 1

    def release(self, client: str) -> None:
        """Give back a slot `acquire` took."""
        self._all -= 1
        self._held[client] -= 1
        if not self._held[client]:
            del self._held[client]  # the Counter holds only clients with uploads in flight


def upload_slots_middleware(slots: UploadSlots) -> Middleware:
    """A middleware holding a slot of `slots` for each upload request while it runs."""

    @web.middleware
    async def limit_uploads(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_upload(request):
            return await handler(request)
        client = request.remote or ""
        slots.acquire(client)
        try:
            return await handler(request)
        finally:
            slots.release(client)

    return limit_uploads


def _is_upload(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    if resource is None or not request.body_exists:
        return False
    path = resource.canonical
    return path.startswith("/v2/{name}/") and route_rule(request.method, path).body is Body.BLOB
