"""Two registry processes on one storage serve one registry (README "Running several processes").

Each test runs two apps, as two processes would, each with its own driver
on the same directory or bucket, and checks the guarantees the README states:
reads by digest agree at once, tags and listings converge within the feed
interval, no acknowledged write is lost, and the last tag write wins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry import layout
from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, FeedConfig
from registry.digest import Digest
from registry.drivers.base import StorageDriver
from registry.metrics import exposition
from tests.api.oci import digest_of, error_codes, push_blob, push_image
from tests.conftest import same_storage

INTERVAL = 0.1
CONFIG = Config(feed=FeedConfig(interval_seconds=INTERVAL, reconcile_seconds=0))
# How long a tag or listing may take to converge: one feed interval, plus the
# batching delay and a poll's own time on a loaded test machine.
CONVERGE = 20 * INTERVAL + 2.0


async def start(storage: StorageDriver, config: Config = CONFIG) -> TestClient:
    server = TestServer(create_app(config, storage))
    await server.start_server(**server_options(config.limits))
    client = TestClient(server)
    await client.start_server()
    return client


@pytest.fixture
async def pair(storage: StorageDriver) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Two registries on the same storage, started one after the other."""
    first = await start(storage)
    second = await start(same_storage(storage))
    yield first, second
    await first.close()
    await second.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = CONVERGE) -> None:
    """Wait until `check()` is true; fail if it is not within `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "did not converge within the stated bound"
        await asyncio.sleep(INTERVAL / 2)


async def tags(client: TestClient, name: str) -> list[str]:
    response = await client.get(f"/v2/{name}/tags/list")
    if response.status == 404:
        return []
    return list(orjson.loads(await response.read())["tags"])


async def catalog(client: TestClient) -> list[str]:
    response = await client.get("/v2/_catalog")
    return list(orjson.loads(await response.read())["repositories"])


class TestReadsByDigest:
    async def test_a_manifest_and_blob_pushed_through_one_process_read_through_the_other_at_once(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        image = await push_image(a, "team/app", tag=None)
        response = await b.get(f"/v2/team/app/manifests/{image.digest}")
        assert response.status == 200
        assert await response.read() == image.manifest
        layer = await b.get(f"/v2/team/app/blobs/{digest_of(image.layers[0])}")
        assert layer.status == 200
        assert await layer.read() == image.layers[0]

    async def test_a_blob_missing_on_one_process_is_found_after_the_other_stores_it(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        data = b"pushed after a miss"
        digest = digest_of(data)
        assert (await b.head(f"/v2/lib/x/blobs/{digest}")).status == 404
        await push_blob(a, "lib/x", data)
        assert (await b.head(f"/v2/lib/x/blobs/{digest}")).status == 200

    async def test_a_tag_pushed_through_one_process_resolves_through_the_other_at_once(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        """A tag never asked for before is read through to storage, not answered 404."""
        a, b = pair
        image = await push_image(a, "lib/fresh", tag="v1")
        response = await b.get("/v2/lib/fresh/manifests/v1")
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == image.digest


class TestConvergence:
    async def test_a_repository_created_after_start_appears_in_the_other_catalog(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        await push_image(a, "new/repo", tag="v1")

        async def listed() -> bool:
            return "new/repo" in await catalog(b) and await tags(b, "new/repo") == ["v1"]

        await eventually(listed)

    async def test_a_moved_tag_is_followed_by_the_other_process(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        await push_image(a, "lib/app", tag="latest", layers=[b"one"])
        assert (await b.get("/v2/lib/app/manifests/latest")).status == 200
        moved = await push_image(a, "lib/app", tag="latest", layers=[b"two"])

        async def follows() -> bool:
            response = await b.head("/v2/lib/app/manifests/latest")
            return bool(response.headers.get("Docker-Content-Digest") == moved.digest)

        await eventually(follows)

    async def test_a_deleted_tag_and_manifest_stop_being_served_by_the_other_process(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        kept = await push_image(a, "lib/app", tag="kept", layers=[b"kept"])
        gone = await push_image(a, "lib/app", tag="gone", layers=[b"gone"])

        async def both() -> bool:
            return sorted(await tags(b, "lib/app")) == ["gone", "kept"]

        await eventually(both)
        assert (await a.delete(f"/v2/lib/app/manifests/{gone.digest}")).status == 202

        async def forgotten() -> bool:
            by_tag = await b.head("/v2/lib/app/manifests/gone")
            by_digest = await b.head(f"/v2/lib/app/manifests/{gone.digest}")
            return by_tag.status == by_digest.status == 404 and await tags(b, "lib/app") == ["kept"]

        await eventually(forgotten)
        assert (await b.get(f"/v2/lib/app/manifests/{kept.digest}")).status == 200

    async def test_conflicting_tag_writes_end_with_the_last_writer_on_both(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        await push_image(a, "lib/app", tag="t", layers=[b"first"])
        last = await push_image(b, "lib/app", tag="t", layers=[b"second"])

        async def agree() -> bool:
            answers = [
                (await c.head("/v2/lib/app/manifests/t")).headers.get("Docker-Content-Digest")
                for c in (a, b)
            ]
            return answers == [last.digest, last.digest]

        await eventually(agree)


class TestUploadsAcrossProcesses:
    async def test_a_session_opened_on_one_process_is_continued_and_finished_on_the_other(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        data = b"0123456789" * 100
        location = (await a.post("/v2/lib/app/blobs/uploads/")).headers["Location"]
        for client, offset in ((b, 0), (a, 400)):
            response = await client.patch(
                location,
                data=data[offset : offset + 400],
                headers={"Content-Range": f"{offset}-{offset + 399}"},
            )
            assert response.status == 202
            location = response.headers["Location"]
        done = await b.put(f"{location}?digest={digest_of(data)}", data=data[800:])
        assert done.status == 201
        assert await (await a.get(f"/v2/lib/app/blobs/{digest_of(data)}")).read() == data

    async def test_a_whole_blob_put_on_the_other_process_completes_a_post(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        a, b = pair
        data = b"monolithic" * 100
        location = (await a.post("/v2/lib/app/blobs/uploads/")).headers["Location"]
        done = await b.put(f"{location}?digest={digest_of(data)}", data=data)
        assert done.status == 201
        assert await (await a.get(f"/v2/lib/app/blobs/{digest_of(data)}")).read() == data


class TestWritesThatBypassTheFeed:
    async def test_a_blob_deleted_under_the_server_is_stored_again_by_the_next_push(
        self, pair: tuple[TestClient, TestClient], storage: StorageDriver
    ) -> None:
        a, _ = pair
        data = b"deleted by hand" * 100
        digest = await push_blob(a, "lib/app", data)
        await storage.delete(layout.blob_dir(Digest.parse(digest)))
        await asyncio.sleep(1.1)  # the longest a HEAD may trust an earlier confirmation
        assert (await a.head(f"/v2/lib/app/blobs/{digest}")).status == 404
        # Pushed again in chunks: the commit must not trust what it knew.
        start = await a.post("/v2/lib/app/blobs/uploads/")
        location = start.headers["Location"]
        patch = await a.patch(location, data=data[:700])
        assert patch.status == 202
        done = await a.put(
            f"{patch.headers['Location']}&digest={digest}"
            if "?" in patch.headers["Location"]
            else f"{patch.headers['Location']}?digest={digest}",
            data=data[700:],
        )
        assert done.status == 201
        response = await a.get(f"/v2/lib/app/blobs/{digest}")
        assert response.status == 200
        assert await response.read() == data

    async def test_a_get_of_a_blob_deleted_under_the_server_is_blob_unknown(
        self, pair: tuple[TestClient, TestClient], storage: StorageDriver
    ) -> None:
        """A GET trusts a remembered size; the read of the content says it is gone."""
        a, _ = pair
        digest = await push_blob(a, "lib/app", b"read, then deleted by hand" * 100)
        assert (await a.get(f"/v2/lib/app/blobs/{digest}")).status == 200
        await storage.delete(layout.blob_dir(Digest.parse(digest)))
        await asyncio.sleep(1.1)
        response = await a.get(f"/v2/lib/app/blobs/{digest}")
        assert response.status == 404
        assert await error_codes(response) == ["BLOB_UNKNOWN"]

    async def test_a_manifest_whose_blob_was_deleted_under_the_server_is_refused(
        self, pair: tuple[TestClient, TestClient], storage: StorageDriver
    ) -> None:
        a, _ = pair
        image = await push_image(a, "lib/app", tag="v1")
        await storage.delete(layout.blob_dir(Digest.parse(digest_of(image.layers[0]))))
        response = await a.put(
            "/v2/lib/app/manifests/v2",
            data=image.manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert response.status == 400
        assert await error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]

    async def test_tags_written_without_the_feed_are_listed_after_reconciliation(
        self, storage: StorageDriver
    ) -> None:
        config = Config(feed=FeedConfig(interval_seconds=INTERVAL, reconcile_seconds=0.5))
        a = await start(storage, config)
        try:
            image = await push_image(a, "lib/app", tag="v1")
            # As Distribution would tag it, sharing the storage: no feed record.
            digest = Digest.parse(image.digest)
            await storage.put_content(
                layout.tag_index_link("lib/app", "v2", digest), image.digest.encode()
            )
            await storage.put_content(
                layout.tag_current_link("lib/app", "v2"), image.digest.encode()
            )
            await storage.put_content(
                layout.manifest_revision_link("other", digest), image.digest.encode()
            )

            async def reconciled() -> bool:
                return await tags(a, "lib/app") == ["v1", "v2"] and "other" in await catalog(a)

            await eventually(reconciled, within=CONVERGE + 0.5)
        finally:
            await a.close()

    async def test_deleting_a_manifest_removes_tags_another_process_set_unseen(
        self, pair: tuple[TestClient, TestClient], storage: StorageDriver
    ) -> None:
        """A tag written where this process has not looked yet still goes with its manifest."""
        a, _ = pair
        image = await push_image(a, "lib/app", tag="v1")
        digest = Digest.parse(image.digest)
        await storage.put_content(
            layout.tag_index_link("lib/app", "unseen", digest), image.digest.encode()
        )
        await storage.put_content(
            layout.tag_current_link("lib/app", "unseen"), image.digest.encode()
        )
        assert (await a.delete(f"/v2/lib/app/manifests/{image.digest}")).status == 202
        assert [info.path async for info in storage.walk(layout.tags_dir("lib/app"))] == []
        assert (await a.get("/v2/lib/app/manifests/unseen")).status == 404


class TestFeedLag:
    async def test_the_feed_lag_metric_stays_within_a_few_intervals_while_the_feed_is_read(
        self, pair: tuple[TestClient, TestClient]
    ) -> None:
        await asyncio.sleep(5 * INTERVAL)
        lines = [
            line
            for line in exposition().decode().splitlines()
            if line.startswith("cargobay_feed_lag_seconds")
        ]
        assert len(lines) == 1
        assert 0 <= float(lines[0].split()[-1]) < 10 * INTERVAL
