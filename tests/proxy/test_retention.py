"""Cached content under garbage collection: an upstream's default rule keeps what was pulled."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp.test_utils import TestClient

from registry import layout
from registry.config import Config, ProxyConfig, UpstreamConfig
from registry.digest import Digest
from registry.drivers.inmemory import InMemoryDriver
from registry.gc import Lease, collect
from registry.gc.pulls import load_pulls
from registry.gc.retention import DAY
from registry.gc.schedule import options_of
from tests.gc.storage import Published, blob_exists, exists
from tests.proxy.conftest import OCI_MANIFEST, FakeUpstream, MirrorFactory


async def pull(mirror: TestClient, name: str, tag: str) -> None:
    """Pull `name:tag` through the mirror as a client does: the manifest, then its blobs."""
    response = await mirror.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert response.status == 200
    manifest = json.loads(await response.read())
    for blob in (manifest["config"], *manifest["layers"]):
        assert (await mirror.get(f"/v2/{name}/blobs/{blob['digest']}")).status == 200


class TestPullRecords:
    async def test_pulls_through_the_mirror_go_to_the_one_pull_log(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        digest, _ = upstream.add_image("team/app", "v1", b"layer")
        storage = InMemoryDriver()
        mirror = await make_mirror(driver=storage)
        await pull(mirror, "up/team/app", "v1")
        assert (await mirror.get(f"/v2/up/team/app/manifests/{digest}")).status == 200
        await mirror.close()  # the pull log is flushed when the server stops
        pulls = await load_pulls(storage, time.time())
        assert set(pulls) == {("up/team/app", "v1"), ("up/team/app", digest)}


class TestDefaultRetention:
    async def test_a_tag_not_pulled_within_retention_days_is_collected_and_one_pulled_is_kept(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        idle, idle_layer = upstream.add_image("team/app", "idle", b"idle layer")
        used, used_layer = upstream.add_image("team/app", "used", b"used layer")
        storage = InMemoryDriver()
        mirror = await make_mirror(driver=storage, retention_days=30)
        await pull(mirror, "up/team/app", "idle")
        await pull(mirror, "up/team/app", "used")
        cached = time.time()
        await asyncio.sleep(0.01)
        pulled_again = time.time()
        await pull(mirror, "up/team/app", "used")
        await mirror.close()
        # Thirty days after a moment between the two pulls of `used`.
        at = (cached + pulled_again) / 2 + 30 * DAY
        config = Config(
            proxy=ProxyConfig(
                upstreams=(
                    UpstreamConfig(name="up", url=upstream.url, prefix="up", retention_days=30),
                )
            )
        )
        lease = Lease(storage, settle=0.0, clock=lambda: at)
        await collect(storage, options_of(config), Published(), lease=lease, clock=lambda: at)
        name = "up/team/app"
        assert await exists(storage, layout.tag_current_link(name, "used"))
        assert await exists(storage, layout.manifest_revision_link(name, Digest.parse(used)))
        assert await blob_exists(storage, used_layer)
        assert not await exists(storage, layout.tag_dir(name, "idle"))
        assert not await exists(storage, layout.manifest_revision_link(name, Digest.parse(idle)))
        assert not await blob_exists(storage, idle_layer)

    async def test_what_was_collected_is_fetched_again_when_pulled(
        self, upstream: FakeUpstream, make_mirror: MirrorFactory
    ) -> None:
        upstream.add_image("team/app", "v1", b"layer")
        storage = InMemoryDriver()
        mirror = await make_mirror(driver=storage, retention_days=1)
        await pull(mirror, "up/team/app", "v1")
        await mirror.close()
        at = time.time() + 2 * DAY
        config = Config(
            proxy=ProxyConfig(
                upstreams=(
                    UpstreamConfig(name="up", url=upstream.url, prefix="up", retention_days=1),
                )
            )
        )
        lease = Lease(storage, settle=0.0, clock=lambda: at)
        await collect(storage, options_of(config), Published(), lease=lease, clock=lambda: at)
        assert not await exists(storage, layout.tag_dir("up/team/app", "v1"))
        again = await make_mirror(driver=storage, retention_days=1)
        await pull(again, "up/team/app", "v1")
        assert upstream.count("GET", "/blobs/") == 4  # config and layer, twice
