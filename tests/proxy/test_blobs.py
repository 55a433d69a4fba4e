"""Proxied blobs: one download however many ask, streamed while stored, verified before kept."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from tests.proxy.conftest import FakeUpstream, MirrorFactory, digest_of

LAYER = random.Random(14).randbytes(3 * 1024 * 1024 + 17)


class TestSingleFlight:
    async def test_concurrent_pulls_of_an_uncached_blob_make_one_upstream_get(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        mirror = await make_mirror()

        async def pull() -> bytes:
            response = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
            assert response.status == 200
            return await response.read()

        bodies = await asyncio.gather(*(pull() for _ in range(20)))
        assert all(body == LAYER for body in bodies)
        assert upstream.count("GET", f"/blobs/{layer}") == 1
        again = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        assert await again.read() == LAYER
        assert upstream.count("GET", f"/blobs/{layer}") == 1

    async def test_the_first_client_gets_bytes_before_the_download_ends(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.hold_blobs = asyncio.Event()
        mirror = await make_mirror()
        response = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(LAYER)
        first = await response.content.readexactly(len(LAYER) // 4)
        assert first == LAYER[: len(LAYER) // 4]
        upstream.hold_blobs.set()
        assert first + await response.read() == LAYER

    async def test_a_range_of_a_blob_being_fetched_is_answered_correctly(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.hold_blobs = asyncio.Event()
        mirror = await make_mirror()
        start, end = len(LAYER) - 1000, len(LAYER) - 1
        ranged = asyncio.create_task(
            mirror.get(f"/v2/up/team/app/blobs/{layer}", headers={"Range": f"bytes={start}-{end}"})
        )
        await asyncio.wait_for(upstream.blob_half_sent.wait(), 5)
        upstream.hold_blobs.set()
        part = await ranged
        assert part.status == 206
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(LAYER)}"
        assert await part.read() == LAYER[start : end + 1]
        assert upstream.count("GET", "/blobs/") == 1

    async def test_requests_joining_a_slow_download_follow_it(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past the wait for the download to end, joiners (ranged or not) stream from it."""
        monkeypatch.setattr("registry.proxy.blobs._FOLLOWERS_WAIT_SECONDS", 0.05)
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.hold_blobs = asyncio.Event()
        mirror = await make_mirror()
        first = asyncio.create_task(mirror.get(f"/v2/up/team/app/blobs/{layer}"))
        await asyncio.wait_for(upstream.blob_half_sent.wait(), 5)
        whole = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        ranged = await mirror.get(
            f"/v2/up/team/app/blobs/{layer}", headers={"Range": "bytes=10-19"}
        )
        # Headers came while the download was held half-way.
        assert (whole.status, ranged.status) == (200, 206)
        assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(LAYER)}"
        upstream.hold_blobs.set()
        assert await ranged.read() == LAYER[10:20]
        assert await whole.read() == LAYER
        assert await (await first).read() == LAYER
        assert upstream.count("GET", "/blobs/") == 1

    async def test_a_client_leaving_does_not_cancel_the_download_for_the_others(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.hold_blobs = asyncio.Event()
        mirror = await make_mirror()
        leaver = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        await leaver.content.readexactly(1024)
        stayer = asyncio.create_task(mirror.get(f"/v2/up/team/app/blobs/{layer}"))
        await asyncio.sleep(0.1)
        leaver.close()
        await asyncio.sleep(0.1)
        upstream.hold_blobs.set()
        assert await (await stayer).read() == LAYER
        cached = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        assert await cached.read() == LAYER
        assert upstream.count("GET", "/blobs/") == 1


class TestIntegrity:
    async def test_a_corrupt_download_is_never_served_whole_nor_kept(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.corrupt_blobs = True
        mirror = await make_mirror()
        response = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        assert response.status == 200  # begun before the digest could be checked
        with pytest.raises(aiohttp.ClientPayloadError):  # then dropped: the body ends short
            await response.read()
        upstream.corrupt_blobs = False
        retry = await mirror.get(f"/v2/up/team/app/blobs/{layer}")
        assert await retry.read() == LAYER
        assert upstream.count("GET", "/blobs/") == 2

    async def test_a_blob_the_upstream_lacks_is_blob_unknown(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        mirror = await make_mirror()
        missing = digest_of(b"nowhere")
        response = await mirror.get(f"/v2/up/team/app/blobs/{missing}")
        assert response.status == 404
        assert (await response.json())["errors"][0]["code"] == "BLOB_UNKNOWN"

    async def test_a_blob_stored_for_one_repository_is_linked_into_another_without_fetching(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.add_image("team/other", "v1", LAYER)
        mirror = await make_mirror()
        assert await (await mirror.get(f"/v2/up/team/app/blobs/{layer}")).read() == LAYER
        head = await mirror.head(f"/v2/up/team/other/blobs/{layer}")
        assert head.status == 200
        assert upstream.count("GET", "/blobs/") == 1


class TestHead:
    async def test_a_head_of_an_uncached_blob_asks_the_upstream_and_downloads_nothing(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        mirror = await make_mirror()
        response = await mirror.head(f"/v2/up/team/app/blobs/{layer}")
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(LAYER)
        assert response.headers["Docker-Content-Digest"] == layer
        assert upstream.count("HEAD", f"/blobs/{layer}") == 1
        assert upstream.count("GET", "/blobs/") == 0

    async def test_a_head_of_a_blob_the_upstream_lacks_is_404(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        mirror = await make_mirror()
        response = await mirror.head(f"/v2/up/team/app/blobs/{digest_of(b'nowhere')}")
        assert response.status == 404
        assert upstream.count("GET", "/blobs/") == 0

    async def test_a_head_while_the_upstream_is_down_is_503(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.status = 502
        mirror = await make_mirror()
        response = await mirror.head(f"/v2/up/team/app/blobs/{layer}")
        assert response.status == 503

    async def test_a_head_of_a_blob_being_fetched_or_cached_asks_nothing_more(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        _, layer = upstream.add_image("team/app", "v1", LAYER)
        upstream.hold_blobs = asyncio.Event()
        mirror = await make_mirror()
        download = asyncio.create_task(mirror.get(f"/v2/up/team/app/blobs/{layer}"))
        await asyncio.wait_for(upstream.blob_half_sent.wait(), 5)
        during = await mirror.head(f"/v2/up/team/app/blobs/{layer}")
        assert int(during.headers["Content-Length"]) == len(LAYER)
        upstream.hold_blobs.set()
        assert await (await download).read() == LAYER
        after = await mirror.head(f"/v2/up/team/app/blobs/{layer}")
        assert int(after.headers["Content-Length"]) == len(LAYER)
        assert upstream.count("HEAD", "/blobs/") == 0
        assert upstream.count("GET", "/blobs/") == 1
