"""A serving registry records the pulls retention rules need, and collects on its schedule."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.auth import server_options
from registry.config import Config, GcConfig, StorageConfig
from registry.drivers.inmemory import InMemoryDriver
from registry.gc.pulls import load_pulls
from tests.api.oci import push_blob, push_image
from tests.gc.storage import blob_exists


async def serve(driver: InMemoryDriver, config: Config) -> TestClient:
    server = TestServer(create_app(config, driver))
    await server.start_server(**server_options(config.limits))
    client = TestClient(server)
    await client.start_server()
    return client


class TestServe:
    async def test_pulls_are_recorded_and_written_when_the_server_stops(self) -> None:
        driver = InMemoryDriver()
        client = await serve(driver, Config())
        image = await push_image(client, "team/app", "v1")
        assert (await client.get("/v2/team/app/manifests/v1")).status == 200
        assert (await client.get(f"/v2/team/app/manifests/{image.digest}")).status == 200
        assert (await client.get("/v2/team/app/manifests/nope")).status == 404
        await client.close()
        pulls = await load_pulls(driver, time.time())
        assert set(pulls) == {("team/app", "v1"), ("team/app", image.digest)}

    async def test_a_look_at_the_web_page_records_no_pull(self) -> None:
        """Else every tag shown on a page would be kept by a rule keeping pulled tags."""
        driver = InMemoryDriver()
        client = await serve(driver, Config())
        await push_image(client, "team/app", "v1")
        for page in ("/ui/r/team/app", "/ui/r/team/app/-/m/v1", "/ui/r/team/app/-/raw/v1"):
            assert (await client.get(page)).status == 200, page
        await client.close()
        assert await load_pulls(driver, time.time()) == {}

    async def test_a_read_only_server_writes_no_pull_records(self) -> None:
        driver = InMemoryDriver()
        writer = await serve(driver, Config())
        await push_image(writer, "team/app", "v1")
        await writer.close()
        reader = await serve(driver, Config(storage=StorageConfig(read_only=True)))
        assert (await reader.get("/v2/team/app/manifests/v1")).status == 200
        await reader.close()
        assert await load_pulls(driver, time.time()) == {}

    async def test_an_interval_collects_in_the_background(self) -> None:
        driver = InMemoryDriver()
        config = Config(gc=GcConfig(grace_seconds=0.0, interval_seconds=0.2))
        client = await serve(driver, config)
        try:
            orphan = await push_blob(client, "team/app", b"never referenced")
            for _ in range(100):
                if not await blob_exists(driver, orphan):
                    break
                await asyncio.sleep(0.1)
            assert not await blob_exists(driver, orphan)
            assert (await client.head(f"/v2/team/app/blobs/{orphan}")).status == 404
        finally:
            await client.close()
