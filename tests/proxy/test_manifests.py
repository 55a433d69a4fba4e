"""Proxied manifests: by digest kept for good, by tag revalidated after the TTL, else stale."""

from __future__ import annotations

import asyncio

from registry.drivers.inmemory import InMemoryDriver
from tests.proxy.conftest import OCI_MANIFEST, FakeUpstream, MirrorFactory

ACCEPT = {"Accept": OCI_MANIFEST}


class TestByDigest:
    async def test_a_manifest_by_digest_is_fetched_once_and_kept(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror(tag_ttl_seconds=0)
        for _ in range(3):
            response = await mirror.get(f"/v2/up/team/app/manifests/{digest}", headers=ACCEPT)
            assert response.status == 200
            assert await response.read() == upstream.manifests[digest]
            assert response.headers["Docker-Content-Digest"] == digest
        assert upstream.count("GET", "/manifests/") == 1

    async def test_concurrent_requests_for_one_manifest_share_one_fetch(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror()
        responses = await asyncio.gather(
            *(mirror.get(f"/v2/up/team/app/manifests/{digest}") for _ in range(20))
        )
        assert [r.status for r in responses] == [200] * 20
        assert upstream.count("GET", "/manifests/") == 1

    async def test_a_manifest_the_upstream_lacks_is_manifest_unknown(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        mirror = await make_mirror()
        response = await mirror.get("/v2/up/team/app/manifests/sha256:" + "0" * 64)
        assert response.status == 404
        assert (await response.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


class TestByTag:
    async def test_a_tag_within_its_ttl_is_served_without_asking_upstream(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror(tag_ttl_seconds=300)
        for _ in range(5):
            assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        # The first pull: a HEAD (is it stored already?), then the GET.
        assert upstream.count("HEAD", "/manifests/v1") == 1
        assert upstream.count("GET", "/manifests/v1") == 1

    async def test_after_the_ttl_a_tag_is_revalidated_with_a_head(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror(tag_ttl_seconds=1)
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        await asyncio.sleep(1.1)
        response = await mirror.get("/v2/up/team/app/manifests/v1")
        assert response.headers["Docker-Content-Digest"] == digest
        assert upstream.count("HEAD", "/manifests/v1") == 2
        assert upstream.count("GET", "/manifests/v1") == 1

    async def test_a_tag_moved_upstream_is_followed_after_the_ttl(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        old, _ = upstream.add_image("team/app", "v1", b"old layer")
        mirror = await make_mirror(tag_ttl_seconds=1)
        first = await mirror.get("/v2/up/team/app/manifests/v1")
        assert first.headers["Docker-Content-Digest"] == old
        new, _ = upstream.add_image("team/app", "v1", b"new layer")
        still = await mirror.get("/v2/up/team/app/manifests/v1")
        assert still.headers["Docker-Content-Digest"] == old  # within the TTL
        await asyncio.sleep(1.1)
        moved = await mirror.get("/v2/up/team/app/manifests/v1")
        assert moved.headers["Docker-Content-Digest"] == new
        assert await moved.read() == upstream.manifests[new]
        # The old revision stays cached by digest.
        assert (await mirror.get(f"/v2/up/team/app/manifests/{old}")).status == 200

    async def test_a_cached_tag_is_served_stale_with_a_warning_when_upstream_fails(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror(tag_ttl_seconds=0)
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        for status in (503, 429):
            upstream.status = status
            response = await mirror.get("/v2/up/team/app/manifests/v1")
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == digest
            assert response.headers["Warning"].startswith('110 cargobay "Response is stale')
            assert str(status) in response.headers["Warning"]

    async def test_an_uncached_tag_when_upstream_fails_is_unavailable(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        upstream.add_image("team/app", "v1", b"layer")
        upstream.status = 503
        mirror = await make_mirror()
        response = await mirror.get("/v2/up/team/app/manifests/v1")
        assert response.status == 503
        error = (await response.json())["errors"][0]
        assert error["code"] == "UNAVAILABLE"
        assert "up: answered 503" in error["message"]

    async def test_a_fetched_tag_is_listed_and_kept_in_the_layout(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror()
        await mirror.get("/v2/up/team/app/manifests/v1")
        tags = await (await mirror.get("/v2/up/team/app/tags/list")).json()
        assert tags == {"name": "up/team/app", "tags": ["v1"]}


class TestNamespace:
    async def test_a_containerd_namespace_routes_and_is_echoed(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror()
        response = await mirror.get("/v2/team/app/manifests/v1?ns=up")
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["OCI-Namespace"] == "up"
        # The same cached copy as the prefix route: no second fetch.
        assert (await mirror.get("/v2/up/team/app/manifests/v1")).status == 200
        assert upstream.count("GET", "/manifests/v1") == 1

    async def test_the_default_upstream_serves_names_without_namespace(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("library/alpine", "3", b"layer")
        mirror = await make_mirror(default=True, dockerhub_library=True)
        response = await mirror.get("/v2/library/alpine/manifests/3")
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == digest
        short = await mirror.get("/v2/up/alpine/manifests/3")
        assert short.headers["Docker-Content-Digest"] == digest


class TestSharedStorage:
    async def test_a_manifest_stored_by_another_process_is_not_fetched_again(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        """Two mirrors on one storage, as several processes run: the second only asks HEAD."""
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        storage = InMemoryDriver()
        first = await make_mirror(driver=storage)
        second = await make_mirror(driver=storage)
        assert (await first.get("/v2/up/team/app/manifests/v1")).status == 200
        by_tag = await second.get("/v2/up/team/app/manifests/v1")
        assert by_tag.headers["Docker-Content-Digest"] == digest
        assert (await second.get(f"/v2/up/team/app/manifests/{digest}")).status == 200
        assert upstream.count("GET", "/manifests/") == 1


class TestWebPage:
    async def test_a_look_at_a_mirrored_repository_fetches_nothing_upstream(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        """The page shows what is cached: its image config, never pulled, stays upstream."""
        upstream.add_image("team/app", "v1", b"layer")
        mirror = await make_mirror()
        assert (await mirror.get("/v2/up/team/app/manifests/v1", headers=ACCEPT)).status == 200
        asked = sum(upstream.requests.values())
        page = await mirror.get("/ui/r/up/team/app")
        assert page.status == 200
        assert 'data-tag="v1"' in await page.text()
        assert sum(upstream.requests.values()) == asked
        assert upstream.count("GET", "/blobs/") == 0
