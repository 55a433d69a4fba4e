"""Tag lists of proxied repositories: the upstream's, paged for our name, else the cached ones."""

from __future__ import annotations

import logging

import pytest

from tests.proxy.conftest import FakeUpstream, MirrorFactory


def images(upstream: FakeUpstream, *tags: str) -> None:
    for tag in tags:
        upstream.add_image("team/app", tag, f"layer {tag}".encode())


class TestFromUpstream:
    async def test_the_list_is_the_upstreams_with_tags_never_pulled(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1", "v2", "v3")
        mirror = await make_mirror()
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        response = await mirror.get("/v2/up/team/app/tags/list")
        assert response.status == 200
        assert await response.json() == {"name": "up/team/app", "tags": ["v1", "v2", "v3"]}
        assert "Link" not in response.headers

    async def test_pages_follow_the_upstreams_with_links_for_our_name(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1", "v2", "v3")
        mirror = await make_mirror()
        first = await mirror.get("/v2/up/team/app/tags/list", params={"n": "2"})
        assert (await first.json())["tags"] == ["v1", "v2"]
        assert first.headers["Link"] == '</v2/up/team/app/tags/list?n=2&last=v2>; rel="next"'
        second = await mirror.get("/v2/up/team/app/tags/list?n=2&last=v2")
        assert (await second.json())["tags"] == ["v3"]
        assert "Link" not in second.headers
        assert upstream.count("GET", "/tags/list") == 2

    async def test_an_upstream_that_ignores_n_and_last_is_paged_here(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1", "v2", "v3")
        upstream.paginates = False
        mirror = await make_mirror()
        first = await mirror.get("/v2/up/team/app/tags/list", params={"n": "2"})
        assert (await first.json())["tags"] == ["v1", "v2"]
        assert first.headers["Link"] == '</v2/up/team/app/tags/list?n=2&last=v2>; rel="next"'
        second = await mirror.get("/v2/up/team/app/tags/list?n=2&last=v2")
        assert (await second.json())["tags"] == ["v3"]
        assert "Link" not in second.headers
        rest = await mirror.get("/v2/up/team/app/tags/list?n=5&last=v1")
        assert (await rest.json())["tags"] == ["v2", "v3"]

    async def test_the_default_route_links_to_the_name_the_client_used(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1", "v2", "v3")
        mirror = await make_mirror(default=True)
        response = await mirror.get("/v2/team/app/tags/list", params={"n": "1"})
        assert (await response.json())["tags"] == ["v1"]
        assert response.headers["Link"] == '</v2/team/app/tags/list?n=1&last=v1>; rel="next"'

    async def test_a_list_routed_by_ns_links_to_its_next_page_with_the_ns(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1", "v2")
        mirror = await make_mirror()
        response = await mirror.get("/v2/team/app/tags/list", params={"n": "1", "ns": "up"})
        assert (await response.json())["tags"] == ["v1"]
        link = '</v2/team/app/tags/list?n=1&last=v1&ns=up>; rel="next"'
        assert response.headers["Link"] == link

    async def test_a_token_auth_upstream_is_asked_with_a_token(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1")
        upstream.token_auth = True
        mirror = await make_mirror()
        response = await mirror.get("/v2/up/team/app/tags/list")
        assert (await response.json())["tags"] == ["v1"]
        assert upstream.token_requests == ["repository:team/app:pull"]

    async def test_a_repository_the_upstream_lacks_is_name_unknown(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        mirror = await make_mirror()
        response = await mirror.get("/v2/up/team/none/tags/list")
        assert response.status == 404
        assert (await response.json())["errors"][0]["code"] == "NAME_UNKNOWN"


class TestUpstreamFailing:
    async def test_the_cached_tags_are_listed_with_a_warning_and_a_log_line(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        images(upstream, "v1", "v2")
        mirror = await make_mirror()
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        upstream.status = 503
        with caplog.at_level(logging.WARNING, logger="registry.proxy.manifests"):
            response = await mirror.get("/v2/up/team/app/tags/list")
        assert response.status == 200
        assert (await response.json())["tags"] == ["v1"]
        assert response.headers["Warning"].startswith("110 ")
        assert "cached tags of up/team/app" in caplog.text

    async def test_with_nothing_cached_the_failure_is_503(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        images(upstream, "v1")
        upstream.status = 503
        mirror = await make_mirror()
        response = await mirror.get("/v2/up/team/app/tags/list")
        assert response.status == 503
        assert (await response.json())["errors"][0]["code"] == "UNAVAILABLE"
