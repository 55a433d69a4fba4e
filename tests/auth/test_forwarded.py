"""Forwarded headers are believed from trusted proxies only."""

from __future__ import annotations

from dataclasses import replace

from registry.config import Config, HttpConfig, LimitsConfig
from tests.auth.conftest import SERVICE, Modes, Serve


def behind(config: Config, *proxies: str) -> Config:
    return replace(config, http=HttpConfig(trusted_proxies=proxies))


class TestForwarded:
    async def test_realm_follows_the_proxy_scheme_and_host(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(behind(modes.issuing, "127.0.0.0/8"))
        response = await client.get(
            "/v2/",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"},
        )
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="https://registry.example.com/token",service="{SERVICE}"'
        )

    async def test_headers_from_an_untrusted_peer_are_ignored(
        self, serve: Serve, modes: Modes
    ) -> None:
        client = await serve(behind(modes.issuing, "10.0.0.0/8"))
        response = await client.get(
            "/v2/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
        )
        assert "evil.example" not in response.headers["WWW-Authenticate"]

    async def test_rate_limit_applies_to_each_client_behind_the_proxy(self, serve: Serve) -> None:
        config = Config(limits=LimitsConfig(rate_limit_per_second=0.01, rate_limit_burst=1))
        client = await serve(behind(config, "127.0.0.1"))
        one = {"X-Forwarded-For": "203.0.113.7"}
        # A client may put anything in front; the proxy appends the address it saw.
        two = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"}
        assert (await client.get("/v2/", headers=one)).status == 200
        assert (await client.get("/v2/", headers=one)).status == 429
        assert (await client.get("/v2/", headers=two)).status == 200
        assert (await client.get("/v2/", headers=two)).status == 429

    async def test_without_trusted_proxies_the_peer_is_the_client(self, serve: Serve) -> None:
        config = Config(limits=LimitsConfig(rate_limit_per_second=0.01, rate_limit_burst=1))
        client = await serve(config)
        assert (await client.get("/v2/", headers={"X-Forwarded-For": "203.0.113.7"})).status == 200
        assert (await client.get("/v2/", headers={"X-Forwarded-For": "198.51.100.2"})).status == 429
