"""A per-client request rate limit: one token bucket per client address, in memory.

Each client may make `burst` requests at once and `rate` per second on
average; over that it is answered 429 `TOOMANYREQUESTS` with a `Retry-After`
saying when its next request will be accepted. Behind a reverse proxy the
client address is the one `registry.auth.forwarded` recovered.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from registry.api.middleware import Handler
from registry.errors import TooManyRequests

# Buckets kept; past this the least recently seen client's is forgotten, which
# at worst gives that client a fresh burst. Bounds memory whatever the traffic.
_MAX_CLIENTS = 100_000


class TokenBuckets:
    """Token buckets keyed by client, refilled continuously at `rate` up to `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, client: str) -> float:
        """Spend one token of `client`'s bucket: 0.0 if it had one, else seconds until it will."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


def rate_limit_middleware(buckets: TokenBuckets) -> Middleware:
    """A middleware refusing requests of a client whose bucket is empty."""

    @web.middleware
    async def limit_rate(request: web.Request, handler: Handler) -> web.StreamResponse:
        wait = buckets.take(request.remote or "")
        if wait:
            raise TooManyRequests(
                f"too many requests from {request.remote}", retry_after=math.ceil(wait)
            )
        return await handler(request)

    return limit_rate
