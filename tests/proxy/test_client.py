"""The upstream client's authentication: anonymous, Basic, and Bearer tokens cached per scope."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from registry.config import UpstreamConfig
from registry.errors import UpstreamUnavailable
from registry.proxy.client import Upstream
from tests.proxy.conftest import FakeUpstream


def client(fake: FakeUpstream, session: aiohttp.ClientSession, **options: str) -> Upstream:
    return Upstream(UpstreamConfig(name="up", url=fake.url, prefix="up", **options), session)


class TestAuthentication:
    async def test_anonymous_upstream_gets_no_credentials(self, upstream: FakeUpstream) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        async with aiohttp.ClientSession() as session:
            got = await client(upstream, session).get_manifest("team/app", "v1", 1 << 20)
        assert got is not None and got.digest == digest

    async def test_basic_credentials_are_sent_once_asked_for(self, upstream: FakeUpstream) -> None:
        upstream.basic_auth = ("bob", "secret")
        upstream.add_image("team/app", "v1", b"layer")
        async with aiohttp.ClientSession() as session:
            up = client(upstream, session, username="bob", password="secret")
            assert await up.head_manifest("team/app", "v1") is not None
            assert await up.head_manifest("team/app", "v1") is not None
        # One 401 to learn the scheme, then credentials up front.
        assert upstream.count("HEAD", "/manifests/v1") == 3

    async def test_a_bearer_token_is_fetched_once_per_scope_and_reused(
        self, upstream: FakeUpstream
    ) -> None:
        upstream.token_auth = True
        upstream.add_image("team/app", "v1", b"layer")
        upstream.add_image("team/other", "v1", b"other")
        async with aiohttp.ClientSession() as session:
            up = client(upstream, session)
            await asyncio.gather(*(up.head_manifest("team/app", "v1") for _ in range(10)))
            await up.head_manifest("team/app", "v1")
            await up.head_manifest("team/other", "v1")
        assert upstream.token_requests == [
            "repository:team/app:pull",
            "repository:team/other:pull",
        ]

    async def test_an_expired_token_is_replaced(self, upstream: FakeUpstream) -> None:
        upstream.token_auth = True
        upstream.token_seconds = 1
        upstream.add_image("team/app", "v1", b"layer")
        async with aiohttp.ClientSession() as session:
            up = client(upstream, session)
            await up.head_manifest("team/app", "v1")
            await asyncio.sleep(0.6)  # past half of the token's second: dropped early
            await up.head_manifest("team/app", "v1")
        assert len(upstream.token_requests) == 2

    async def test_refused_credentials_are_upstream_unavailable(
        self, upstream: FakeUpstream
    ) -> None:
        upstream.basic_auth = ("bob", "secret")
        upstream.add_image("team/app", "v1", b"layer")
        async with aiohttp.ClientSession() as session:
            up = client(upstream, session, username="bob", password="wrong")
            with pytest.raises(UpstreamUnavailable, match="401"):
                await up.get_manifest("team/app", "v1", 1 << 20)


class TestFailures:
    @pytest.mark.parametrize("status", [500, 503, 429])
    async def test_error_statuses_are_upstream_unavailable(
        self, upstream: FakeUpstream, status: int
    ) -> None:
        upstream.status = status
        async with aiohttp.ClientSession() as session:
            with pytest.raises(UpstreamUnavailable, match=str(status)):
                await client(upstream, session).get_manifest("team/app", "v1", 1 << 20)

    async def test_a_closed_port_is_upstream_unavailable(self) -> None:
        config = UpstreamConfig(name="gone", url="http://127.0.0.1:9", prefix="gone")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(UpstreamUnavailable, match="unreachable"):
                await Upstream(config, session).head_manifest("team/app", "v1")

    async def test_a_missing_manifest_is_none(self, upstream: FakeUpstream) -> None:
        async with aiohttp.ClientSession() as session:
            assert await client(upstream, session).get_manifest("team/app", "v9", 1024) is None
