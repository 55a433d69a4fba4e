"""Per-client rate limits: a burst, then a steady rate, then 429 with Retry-After."""

from __future__ import annotations

from registry.auth.ratelimit import TokenBuckets
from registry.config import Config, LimitsConfig
from tests.auth.conftest import Serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBuckets:
    def test_burst_then_refill_at_the_rate(self) -> None:
        clock = FakeClock()
        buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
        assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert buckets.take("a") == 0.5
        clock.now += 0.5
        assert buckets.take("a") == 0.0
        assert buckets.take("a") > 0

    def test_clients_have_their_own_buckets(self) -> None:
        buckets = TokenBuckets(rate=1.0, burst=1, clock=FakeClock())
        assert buckets.take("a") == 0.0
        assert buckets.take("a") > 0
        assert buckets.take("b") == 0.0

    def test_refused_requests_do_not_dig_a_deeper_hole(self) -> None:
        clock = FakeClock()
        buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
        buckets.take("a")
        for _ in range(10):
            buckets.take("a")
        clock.now += 1.0
        assert buckets.take("a") == 0.0


class TestRateLimitMiddleware:
    async def test_client_over_its_rate_gets_429_with_retry_after(self, serve: Serve) -> None:
        config = Config(limits=LimitsConfig(rate_limit_per_second=0.5, rate_limit_burst=2))
        client = await serve(config)
        assert (await client.get("/v2/")).status == 200
        assert (await client.get("/v2/")).status == 200
        response = await client.get("/v2/_catalog")
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        assert (await response.json())["errors"][0]["code"] == "TOOMANYREQUESTS"

    async def test_no_limit_by_default(self, serve: Serve) -> None:
        client = await serve(Config())
        for _ in range(300):
            assert (await client.get("/v2/")).status == 200
